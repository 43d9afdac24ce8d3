package thintools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// needTools skips a test on a machine without thin-provisioning-tools (the VM tier runs the
// same code against a live pool).
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"thin_restore", "thin_dump", "thin_delta"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (package thin-provisioning-tools): %v", tool, err)
		}
	}
}

// randomPair makes the mappings of a device and a snapshot of it that was then changed:
// origin block → data block, for blocks 0 to n-1.
func randomPair(r *rand.Rand, n int) (a, b map[int]int) {
	a, b = map[int]int{}, map[int]int{}
	data := 0
	alloc := func() int {
		if r.IntN(4) == 0 {
			data += r.IntN(40) // a gap: the next block is not contiguous
		}
		data++
		return data
	}
	for i := range n {
		if r.IntN(10) < 6 {
			a[i] = alloc()
		}
	}
	for i := range n {
		switch x := r.IntN(10); {
		case x < 8 && a[i] != 0:
			b[i] = a[i] // shared
		case x < 9:
			b[i] = alloc() // rewritten (or written anew)
		}
	}
	return a, b
}

func restoreXML(a, b map[int]int) string {
	var s strings.Builder
	s.WriteString(`<superblock uuid="" time="1" transaction="7" version="2" data_block_size="128" nr_data_blocks="1000000">` + "\n")
	for id, m := range []map[int]int{a, b} {
		fmt.Fprintf(&s, `<device dev_id="%d" mapped_blocks="%d" transaction="0" creation_time="0" snap_time="1">`+"\n", id+1, len(m))
		for _, k := range slices.Sorted(mapsKeys(m)) {
			fmt.Fprintf(&s, `<single_mapping origin_block="%d" data_block="%d" time="0"/>`+"\n", k, m[k])
		}
		s.WriteString("</device>\n")
	}
	s.WriteString("</superblock>\n")
	return s.String()
}

func mapsKeys(m map[int]int) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// extents turns a set of blocks into ascending, coalesced extents.
func extents(blocks []int) []Extent {
	slices.Sort(blocks)
	var out []Extent
	for _, b := range blocks {
		if n := len(out); n > 0 && out[n-1].End() == uint64(b) {
			out[n-1].Length++
			continue
		}
		out = append(out, Extent{uint64(b), 1})
	}
	return out
}

// TestToolsAgreeWithTheMappingsOnRealMetadata writes random mappings into real dm-thin
// metadata with thin_restore, then checks that Mapped and Changed, running the real thin_dump
// and thin_delta, report exactly the mapped and the differing blocks.
func TestToolsAgreeWithTheMappingsOnRealMetadata(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	for seed := range uint64(4) {
		r := rand.New(rand.NewPCG(seed, 1))
		a, b := randomPair(r, 3000)
		dir := t.TempDir()
		in, meta := filepath.Join(dir, "in.xml"), filepath.Join(dir, "meta")
		if err := os.WriteFile(in, []byte(restoreXML(a, b)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(meta, make([]byte, 8<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := (command.Exec{}).Run(ctx, "thin_restore", "-i", in, "-o", meta); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		tools := Tools{}
		var wantMapped, wantDiff []int
		for i := range 3000 {
			if b[i] != 0 {
				wantMapped = append(wantMapped, i)
			}
			if a[i] != b[i] {
				wantDiff = append(wantDiff, i)
			}
		}
		var mapped, diff []Extent
		if err := tools.Mapped(ctx, meta, 2, func(bs uint64, e Extent) error {
			mapped = append(mapped, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := tools.Changed(ctx, meta, 1, 2, func(bs uint64, e Extent) error {
			diff = append(diff, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if want := extents(wantMapped); !slices.Equal(mapped, want) {
			t.Errorf("seed %d: thin_dump: %d extents, want %d", seed, len(mapped), len(want))
		}
		if want := extents(wantDiff); !slices.Equal(diff, want) {
			t.Errorf("seed %d: thin_delta: %d extents, want %d", seed, len(diff), len(want))
		}
		if err := tools.Mapped(ctx, meta, 9, func(uint64, Extent) error { return nil }); !errors.Is(err, ErrNoDevice) {
			t.Errorf("thin_dump of a missing device: %v, want ErrNoDevice", err)
		}
		err := tools.Changed(ctx, meta, 1, 9, func(uint64, Extent) error { return nil })
		var cerr *command.Error
		if !errors.As(err, &cerr) || !strings.Contains(cerr.Stderr, "Unable to find mapping tree") {
			t.Errorf("thin_delta of a missing device: %v, want its own complaint", err)
		}
		// --metadata-snap on metadata that holds none fails: the tool's words come back.
		if err := (Tools{Live: true}).Mapped(ctx, meta, 2, func(uint64, Extent) error { return nil }); err == nil {
			t.Error("thin_dump --metadata-snap read metadata that holds no snapshot")
		}
	}
}

// script is a Streamer that runs sh -c body instead of the tool.
type script struct{ body string }

func (s script) Stream(ctx context.Context, read func(io.Reader) error, _ string, _ ...string) error {
	return command.Exec{WaitDelay: time.Second}.Stream(ctx, read, "sh", "-c", s.body)
}

// renamed is a Streamer that runs another program instead of the tool.
type renamed struct{ name string }

func (r renamed) Stream(ctx context.Context, read func(io.Reader) error, _ string, args ...string) error {
	return command.Exec{}.Stream(ctx, read, r.name, args...)
}

func TestAFailedToolIsReportedWithItsFirstWords(t *testing.T) {
	err := (Tools{Runner: script{"echo 'no current metadata snap' >&2; echo usage >&2; exit 1"}}).
		Mapped(context.Background(), "/dev/null", 1, func(uint64, Extent) error { return nil })
	var cerr *command.Error
	if !errors.As(err, &cerr) || cerr.ExitCode != 1 || cerr.Stderr != "no current metadata snap" {
		t.Fatalf("err = %#v", err)
	}
	// A program that cut its output short: the parse error says what the program said.
	err = (Tools{Runner: script{`echo '<superblock transaction="1" data_block_size="128">'; echo 'bad things' >&2; exit 1`}}).
		Changed(context.Background(), "/dev/null", 1, 2, func(uint64, Extent) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "bad things") {
		t.Fatalf("err = %v, want the program's complaint", err)
	}
}

func TestAnEmitErrorStopsTheProgram(t *testing.T) {
	// A tool that would print forever: the caller's error ends it at once.
	body := `echo '<superblock transaction="1" data_block_size="128"><diff left="1" right="2">'; i=0; ` +
		`while :; do echo "<different begin=\"$((i*2))\" length=\"1\"/>"; i=$((i+1)); done`
	stop := errors.New("enough")
	start := time.Now()
	n := 0
	err := (Tools{Runner: script{body}}).Changed(context.Background(), "/dev/null", 1, 2, func(uint64, Extent) error {
		if n++; n == 100 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the emit error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopping took %v", d)
	}
}

func TestTimeoutBoundsAHungTool(t *testing.T) {
	start := time.Now()
	err := (Tools{Runner: script{"sleep 60"}, Timeout: 200 * time.Millisecond}).
		Mapped(context.Background(), "/dev/null", 1, func(uint64, Extent) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the timeout took %v", d)
	}
}

func TestAMissingToolIsNotInstalled(t *testing.T) {
	err := (Tools{Runner: renamed{"thin_dump_that_is_not_there"}}).
		Mapped(context.Background(), "/dev/null", 1, func(uint64, Extent) error { return nil })
	if !errors.Is(err, ErrNotInstalled) || rpcerr.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v (%v), want ErrNotInstalled, FailedPrecondition", err, rpcerr.Code(err))
	}
}
