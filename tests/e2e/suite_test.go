//go:build vm

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The external-storage specs run here: every one of the seven patterns that fit one node
// (provisioning, volumes, volumeMode, snapshottable, volume-expand, multiVolume, volumeIO), each
// on the variants that add coverage: the class's own file system (ext4: "default fs",
// "filesystem volmode"), raw block, xfs for the data check, snapshots with the delete policy.
// The (ext4) variants repeat "default fs" on the same file system, and the rest (xfs and block
// multiVolume, retain-policy and ephemeral snapshots, block expansion) would add about 25
// minutes under TCG for code paths these already take. The suite itself skips what the driver
// does not claim (testdriver.yaml); those count as skipped in its summary. Left out: "...
// on different node" (one node), and "any volume data source" (needs the hello-populator and
// volume-data-source-validator images, not built here). README "How it is tested" says the
// same.
var externalFocus = `External Storage \[Driver: nvmeof\.csi\.io\] \[Testpattern: (` + strings.Join([]string{
	`Dynamic PV \(default fs\)\] (provisioning|volumes|volumeIO|volume-expand) `,
	`Dynamic PV \(default fs\)\(allowExpansion\)\] volume-expand `,
	`Dynamic PV \(block volmode\)\] (provisioning|volumes|volumeMode) `,
	`Dynamic PV \(filesystem volmode\)\] (volumeMode|multiVolume) `,
	`Dynamic PV \(xfs\)\] \[Slow\] volumes should store data`,
	`Dynamic Snapshot \(delete policy\)\] snapshottable `,
	// The group snapshot pattern's name is " (delete policy)", hence two spaces.
	` \(delete policy\)\] volumegroupsnapshottable `,
}, "|") + `)`

const externalSkip = `\[Disruptive\]|any volume data source|different node`

// summaryLine is Ginkgo's closing tally, e.g. "SUCCESS! -- 40 Passed | 0 Failed | 0 Pending | 7000 Skipped".
var summaryLine = regexp.MustCompile(`(?m)^\S.* -- (\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped`)

// TestExternalStorageSuite runs the e2e.test binary of the same Kubernetes release against the
// cluster with testdriver.yaml, and fails unless its summary shows specs passed and none failed.
func TestExternalStorageSuite(t *testing.T) {
	focus := externalFocus
	if f := os.Getenv("NVMEOF_E2E_FOCUS"); f != "" {
		focus = f
	}
	driver, err := filepath.Abs("testdriver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(os.TempDir(), "e2e-report")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Minute)
	defer cancel()
	procs := 3
	if v := os.Getenv("NVMEOF_E2E_PROCS"); v != "" {
		if procs, err = strconv.Atoi(v); err != nil || procs < 1 {
			t.Fatalf("NVMEOF_E2E_PROCS=%q: want a positive integer", v)
		}
	}
	bin := filepath.Join(cacheDir(), "bin")
	// The ginkgo CLI runs the compiled suite in parallel processes: most of a storage spec's
	// time is waiting (pods, attach, mount), so specs overlap well even on two CPUs.
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "ginkgo"),
		"--procs="+strconv.Itoa(procs),
		"--focus="+focus,
		"--skip="+externalSkip,
		"--no-color",
		"--timeout=150m",
		filepath.Join(bin, "e2e.test"), "--",
		"-kubeconfig="+k8s.Kubeconfig,
		"-kubectl-path="+filepath.Join(bin, "kubectl"),
		"-provider=local",
		"-storage.testdriver="+driver,
		"-report-dir="+report,
		// The suite's own checks of the cluster that a one-node VM cluster has no use for.
		"-e2e-verify-service-account=false",
		"-allowed-not-ready-nodes=0",
	)
	cmd.WaitDelay = 30 * time.Second
	// Ginkgo prints a mark per spec with no newline: pass the bytes on as they come, and
	// keep the text to find the summary.
	var text bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &text)
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	runErr := cmd.Wait()
	elapsed := time.Since(start).Round(time.Second)
	summary := summaryLine.FindString(text.String())
	if summary == "" {
		t.Fatalf("e2e.test printed no summary (%v) after %s", runErr, elapsed)
	}
	fmt.Printf("e2e: external-storage suite summary: %s (in %s)\n", summary, elapsed)
	m := summaryLine.FindStringSubmatch(summary)
	if m[2] != "0" || m[1] == "0" || runErr != nil {
		t.Fatalf("external-storage suite: %s; e2e.test: %v", summary, runErr)
	}
}
