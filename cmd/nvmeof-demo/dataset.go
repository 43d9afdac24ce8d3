package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The dataset is a fake PostgreSQL data directory: a users table as CSV-like text (the one a
// dev environment scrubs), other tables and WAL segments of pseudo-random pages, and a few
// small files. Content is generated from fixed seeds, so two runs write the same bytes.

const (
	pageSize   = 8 << 10
	segmentMax = 32 << 20
	walSegment = 16 << 20
	usersFile  = "pgdata/base/16384/users"
	// manifestFile holds the checksums in sha256sum format, so `sha256sum -c` works in the volume.
	manifestFile = "MANIFEST.sha256"
)

type fileSpec struct {
	path string
	size int64
	seed uint64
	text bool // the users table
}

// fileSum is a file's recorded checksum.
type fileSum struct {
	path string
	size int64
	sum  string
}

// plan lays out about total bytes of files.
func plan(total int64) []fileSpec {
	pages := func(n int64) int64 { return max(pageSize, n/pageSize*pageSize) }
	specs := []fileSpec{
		{path: "pgdata/PG_VERSION", size: 3, seed: 1},
		{path: "pgdata/global/pg_control", size: pageSize, seed: 2},
		{path: usersFile, size: pages(total / 16), seed: 3, text: true},
	}
	rest := total - total/16
	wal := max(1, rest/4/walSegment)
	for i := range wal {
		specs = append(specs, fileSpec{path: fmt.Sprintf("pgdata/pg_wal/%024X", i+1), size: walSegment, seed: 100 + uint64(i)})
	}
	rest -= wal * walSegment
	for i, t := range []struct {
		name  string
		share int64
	}{{"orders", 40}, {"order_items", 30}, {"events", 20}, {"products", 10}} {
		size := pages(rest * t.share / 100)
		for seg := int64(0); size > 0; seg++ {
			name := "pgdata/base/16384/" + t.name
			if seg > 0 {
				name += "." + strconv.FormatInt(seg, 10)
			}
			n := min(size, segmentMax)
			specs = append(specs, fileSpec{path: name, size: n, seed: 1000*uint64(i+1) + uint64(seg)})
			size -= n
		}
	}
	return specs
}

// generate writes s under root and returns its checksum.
func generate(root string, s fileSpec, scrubbed bool) (fileSum, error) {
	path := filepath.Join(root, s.path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fileSum{}, err
	}
	f, err := os.Create(path)
	if err != nil {
		return fileSum{}, err
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if s.text {
		err = writeUsers(w, s, scrubbed)
	} else {
		_, err = io.CopyN(w, rand.NewChaCha8(seed32(s.seed)), s.size)
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Close()
	}
	return fileSum{path: s.path, size: s.size, sum: hex.EncodeToString(h.Sum(nil))}, err
}

var (
	firstNames = []string{"ada", "alan", "barbara", "dennis", "edsger", "frances", "grace", "john", "ken", "linus", "margaret", "radia"}
	lastNames  = []string{"lovelace", "turing", "liskov", "ritchie", "dijkstra", "allen", "hopper", "backus", "thompson", "torvalds", "hamilton", "perlman"}
)

// writeUsers writes s.size bytes of "id,name,email,created" rows; scrubbed rows carry no
// personal data.
func writeUsers(w io.Writer, s fileSpec, scrubbed bool) error {
	rng := rand.New(rand.NewPCG(s.seed, s.seed))
	buf := make([]byte, 0, 1<<20)
	var written int64
	for id := 1; written < s.size; id++ {
		buf = strconv.AppendInt(buf, int64(id), 10)
		if scrubbed {
			buf = append(buf, ",REDACTED,user"...)
			buf = strconv.AppendInt(buf, int64(id), 10)
			buf = append(buf, "@example.invalid,"...)
		} else {
			first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
			buf = append(append(append(append(append(buf, ','), first...), ' '), last...), ',')
			buf = append(append(append(append(buf, first...), '.'), last...), '+')
			buf = strconv.AppendInt(buf, int64(id), 10)
			buf = append(buf, "@corp.example,"...)
		}
		buf = strconv.AppendInt(buf, 1_700_000_000+int64(id)*37, 10)
		buf = append(buf, '\n')
		if len(buf) >= 1<<20 || int64(len(buf))+written >= s.size {
			n := min(int64(len(buf)), s.size-written)
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			written += n
			buf = buf[:0]
		}
	}
	return nil
}

func seed32(n uint64) [32]byte {
	var s [32]byte
	copy(s[:], strconv.FormatUint(n, 10)+"/nvmeof-demo")
	return s
}

// writeDataset generates specs under root with two workers, syncs the file system and writes
// the manifest; it returns the checksums.
func writeDataset(ctx context.Context, root string, specs []fileSpec, p *progress) ([]fileSum, error) {
	sums := make([]fileSum, len(specs))
	err := parallel(ctx, len(specs), 2, func(i int) error {
		var err error
		sums[i], err = generate(root, specs[i], false)
		p.add(specs[i].size)
		return err
	})
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(root, manifestFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, s := range sums {
		fmt.Fprintf(f, "%s  %s\n", s.sum, s.path)
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return nil, err
	}
	return sums, f.Close()
}

// verify reads every file of sums under root with O_DIRECT (from the device, not the page
// cache) and returns the paths whose size or checksum differ.
func verify(root string, sums []fileSum) ([]string, error) {
	buf, err := alignedBuffer(1 << 20)
	if err != nil {
		return nil, err
	}
	defer func() { _ = unix.Munmap(buf) }()
	var bad []string
	for _, s := range sums {
		sum, n, err := hashDirect(filepath.Join(root, s.path), buf)
		if err != nil {
			return nil, err
		}
		if n != s.size || sum != s.sum {
			bad = append(bad, s.path)
		}
	}
	return bad, nil
}

// hashDirect returns a file's SHA-256 and size, reading it with O_DIRECT into buf (plainly
// on a file system without direct I/O, such as tmpfs).
func hashDirect(path string, buf []byte) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		f, err = os.Open(path)
	}
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := copyDirect(h, f, buf)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func copyDirect(h hash.Hash, f *os.File, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		total += int64(n)
		if err == io.EOF || (err == nil && n == 0) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// alignedBuffer returns page-aligned memory, as O_DIRECT needs.
func alignedBuffer(size int) ([]byte, error) {
	return unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

// parallel runs fn(0..n-1) on workers goroutines; the first error stops handing out work.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				if ctx.Err() != nil {
					continue // drain: work handed out before the failure is skipped
				}
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx) // nil unless an fn failed or ctx ended
}

// syncFS flushes the file system holding path (syncfs).
func syncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
