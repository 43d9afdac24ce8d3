package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runMainEnv makes the test binary run main() instead of the tests: the flags are tested as
// the binary parses them.
const runMainEnv = "NVMEOF_CSI_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args = append([]string{"nvmeof-csi"}, strings.Fields(os.Getenv(runMainEnv+"_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Flag combinations that cannot work are usage errors (exit 2) before any I/O.
func TestInvalidFlagCombinationsExitBeforeServing(t *testing.T) {
	for _, tc := range []struct {
		name, args, want string
	}{
		{"registration directory without the kubelet's path", "--mode=node --registration-dir=/registration", "--kubelet-registration-path"},
		{"kubelet path without the registration directory", "--mode=node --kubelet-registration-path=/var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock", "--registration-dir"},
		{"registration in controller mode", "--mode=controller --registration-dir=/registration --kubelet-registration-path=/var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock", "node service"},
		{"healthz address without a port", "--mode=controller --healthz-address=9808", "--healthz-address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0])
			cmd.Env = append(os.Environ(), runMainEnv+"=1", runMainEnv+"_ARGS="+tc.args)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("nvmeof-csi %s: %v, want exit status 2; stderr:\n%s", tc.args, err, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not mention %s", stderr.String(), tc.want)
			}
		})
	}
}
