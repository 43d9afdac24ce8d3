//go:build vm

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
)

// kubectlNvmeof runs `kubectl nvmeof args...` as an operator does: kubectl finds the plugin
// (bin/kubectl-nvmeof, built by make test-k8s) on PATH and passes the kubeconfig through
// KUBECONFIG. stdin answers a confirmation.
func kubectlNvmeof(ctx context.Context, stdin string, args ...string) (string, error) {
	binDir, err := filepath.Abs("../../bin")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(binDir, "kubectl-nvmeof")); err != nil {
		return "", fmt.Errorf("the kubectl plugin is not built (make test-k8s builds bin/kubectl-nvmeof): %w", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cacheDir(), "bin", "kubectl"), append([]string{"nvmeof"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k8s.Kubeconfig, "PATH="+binDir+":"+os.Getenv("PATH"))
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl nvmeof %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String() + stderr.String(), nil
}

// agentClient connects to a storage node's agent as the controller does.
func agentClient(n storageNode) (agentapi.AgentClient, func(), error) {
	cfg, err := mtls.Client(controllerTLS, "nvmeof-agent")
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(n.address, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, nil, err
	}
	return agentapi.NewAgentClient(conn), func() { conn.Close() }, nil
}

// TestKubectlPlugin: `kubectl nvmeof status` and `volumes` show the storage node and a
// scenario's volume with its PVC and live paths; `paths` shows the worker's controllers;
// `orphans` finds a thin volume leaked behind Kubernetes' back, and `--clean` removes it and
// nothing else.
func TestKubectlPlugin(t *testing.T) {
	ctx := testContext(t, 15*time.Minute)
	ns := newNamespace(t, ctx, "ctl")
	createPVC(t, ctx, ns, claim{name: "app-data", storageClass: "nvmeof-tcp", size: "1Gi"})
	startPod(t, ctx, ns, podSpec("app", "app-data", false, corev1.RestartPolicyNever, "sleep 3600"))
	t.Cleanup(func() { deletePod(t, context.Background(), ns, "app") })
	pv := waitBound(t, ctx, ns, "app-data")

	agent, closeAgent, err := agentClient(storageA)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAgent()
	leaked, err := agent.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "leaked-behind-kubernetes", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	leakedID := nodeName + "/" + leaked.GetVolume().GetId()
	t.Cleanup(func() {
		_, _ = agent.DeleteVolume(context.Background(), &agentapi.DeleteVolumeRequest{Id: leaked.GetVolume().GetId()})
	})

	out, err := kubectlNvmeof(ctx, "", "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl nvmeof status:\n%s", out)
	if !strings.Contains(out, nodeName) || !strings.Contains(out, " yes ") {
		t.Errorf("status does not show %s as reachable:\n%s", nodeName, out)
	}

	// The volume's path states come from the node plugin's metrics; the first scrape after
	// staging may still see them settle, so allow a short bounded wait for "live".
	var row map[string]any
	if err := poll(ctx, time.Minute, func() (bool, string, error) {
		out, err := kubectlNvmeof(ctx, "", "volumes", "-o", "json")
		if err != nil {
			return false, "", err
		}
		var rep struct {
			Volumes []map[string]any `json:"volumes"`
		}
		if err := json.Unmarshal([]byte(jsonPart(out)), &rep); err != nil {
			return false, "", fmt.Errorf("volumes -o json: %w\n%s", err, out)
		}
		row = nil
		for _, v := range rep.Volumes {
			if v["pvc"] == ns+"/app-data" {
				row = v
			}
		}
		return row != nil && strings.Contains(fmt.Sprint(row["paths"]), "live"), fmt.Sprintf("row %v", row), nil
	}); err != nil {
		t.Fatalf("volumes never listed %s/app-data with a live path: %v", ns, err)
	}
	if row["pv"] != pv {
		t.Errorf("volumes: %s/app-data has PV %v; want %s", ns, row["pv"], pv)
	}
	out, err = kubectlNvmeof(ctx, "", "volumes")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl nvmeof volumes:\n%s", out)

	out, err = kubectlNvmeof(ctx, "", "paths")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl nvmeof paths:\n%s", out)
	if !strings.Contains(out, fmt.Sprint(row["id"])) || !strings.Contains(out, "live") {
		t.Errorf("paths does not show a live controller of %v:\n%s", row["id"], out)
	}

	out, err = kubectlNvmeof(ctx, "", "orphans")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl nvmeof orphans:\n%s", out)
	if !strings.Contains(out, leakedID) || strings.Contains(out, fmt.Sprint(row["id"])) {
		t.Errorf("orphans: want %s listed and %v (bound to %s/app-data) not:\n%s", leakedID, row["id"], ns, out)
	}
	before := allVolumes(t, ctx)
	out, err = kubectlNvmeof(ctx, "yes\n", "orphans", "--clean")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl nvmeof orphans --clean:\n%s", out)
	_, err = agent.GetVolume(ctx, &agentapi.GetVolumeRequest{Id: leaked.GetVolume().GetId()})
	if status.Code(err) != codes.NotFound {
		t.Errorf("the leaked volume after orphans --clean: GetVolume = %v; want NotFound", err)
	}
	after := allVolumes(t, ctx)
	var gone []string
	for _, v := range before {
		if v.GetId() != leaked.GetVolume().GetId() && !slices.ContainsFunc(after, func(a *agentapi.Volume) bool { return a.GetId() == v.GetId() }) {
			gone = append(gone, v.GetName())
		}
	}
	if len(gone) > 0 {
		t.Errorf("orphans --clean removed more than the leaked volume: %v", gone)
	}
	if err := waitRunning(ctx, ns, "app", time.Minute); err != nil {
		t.Errorf("the pod using app-data after orphans --clean: %v", err)
	}
}

// allVolumes is every volume of every storage node's pool.
func allVolumes(t *testing.T, ctx context.Context) []*agentapi.Volume {
	t.Helper()
	var all []*agentapi.Volume
	for _, n := range storageNodes {
		vols, _, err := agentInventory(ctx, n)
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		all = append(all, vols...)
	}
	return all
}

// jsonPart drops what follows the JSON document (notes on stderr, which kubectlNvmeof joins).
func jsonPart(out string) string {
	dec := json.NewDecoder(strings.NewReader(out))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, context.Canceled) {
		return out
	}
	return string(raw)
}
