package rpcerr_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin/thintools"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

func TestCodeMapsEveryClassContextErrnoAndRemoteStatus(t *testing.T) {
	remote := func(c codes.Code) error { return status.Error(c, "the agent says so") }
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"invalid", rpcerr.Invalidf("bad"), codes.InvalidArgument},
		{"not found", rpcerr.NotFoundf("gone"), codes.NotFound},
		{"exists", rpcerr.Existsf("dup"), codes.AlreadyExists},
		{"exhausted", rpcerr.Exhaustedf("full"), codes.ResourceExhausted},
		{"out of range", rpcerr.OutOfRangef("big"), codes.OutOfRange},
		{"precondition", rpcerr.Preconditionf("published"), codes.FailedPrecondition},
		{"unavailable", rpcerr.Unavailablef("down"), codes.Unavailable},
		{"aborted", rpcerr.Abortedf("busy"), codes.Aborted},
		{"wrapped class", fmt.Errorf("storage node s1: %w", rpcerr.NotFoundf("gone")), codes.NotFound},
		{"unavailable wins over the failure it carries", fmt.Errorf("%w (undo failed: %w)", rpcerr.Invalidf("x"), rpcerr.Unavailablef("left")), codes.Unavailable},
		{"context deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"context canceled", context.Canceled, codes.Canceled},
		{"connection refused", fmt.Errorf("connect: %w", syscall.ECONNREFUSED), codes.Unavailable},
		{"host unreachable", syscall.EHOSTUNREACH, codes.Unavailable},
		{"network unreachable", syscall.ENETUNREACH, codes.Unavailable},
		{"timed out", syscall.ETIMEDOUT, codes.Unavailable},
		{"remote NotFound, wrapped", fmt.Errorf("storage node s1: %w", remote(codes.NotFound)), codes.NotFound},
		{"remote AlreadyExists", remote(codes.AlreadyExists), codes.AlreadyExists},
		{"remote ResourceExhausted", remote(codes.ResourceExhausted), codes.ResourceExhausted},
		{"remote FailedPrecondition", remote(codes.FailedPrecondition), codes.FailedPrecondition},
		{"remote InvalidArgument", remote(codes.InvalidArgument), codes.InvalidArgument},
		{"remote OutOfRange", remote(codes.OutOfRange), codes.OutOfRange},
		{"remote Aborted", remote(codes.Aborted), codes.Aborted},
		{"remote Unavailable", remote(codes.Unavailable), codes.Unavailable},
		{"remote DeadlineExceeded", remote(codes.DeadlineExceeded), codes.DeadlineExceeded},
		{"remote Internal", remote(codes.Internal), codes.Internal},
		{"remote Unknown", remote(codes.Unknown), codes.Internal},
		{"remote Unimplemented (an older agent)", remote(codes.Unimplemented), codes.Internal},
		{"remote PermissionDenied (certificates)", remote(codes.PermissionDenied), codes.Internal},
		{"anything else", errors.New("surprise"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rpcerr.Status(tc.err)
			if status.Code(got) != tc.want || rpcerr.Code(tc.err) != tc.want {
				t.Fatalf("Status(%v) = %v, want %v", tc.err, got, tc.want)
			}
			if tc.err != nil && status.Convert(got).Message() != tc.err.Error() {
				t.Errorf("message %q, want %q", status.Convert(got).Message(), tc.err.Error())
			}
		})
	}
}

func TestSentinelKeepsItsIdentityAndMessage(t *testing.T) {
	s := rpcerr.Sentinel(rpcerr.ErrNotFound, "widget not found")
	err := fmt.Errorf("looking up w1: %w", s)
	if !errors.Is(err, s) || !errors.Is(err, rpcerr.ErrNotFound) {
		t.Fatal("a wrapped sentinel lost its identity or its class")
	}
	if s.Error() != "widget not found" {
		t.Errorf("message %q", s.Error())
	}
	if errors.Is(rpcerr.Sentinel(rpcerr.ErrNotFound, "widget not found"), s) {
		t.Error("two sentinels with the same message are the same error")
	}
}

func TestResultZeroesTheResponseOnError(t *testing.T) {
	resp, err := rpcerr.Result(&struct{}{}, rpcerr.Invalidf("no"))
	if resp != nil || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Result = %v, %v", resp, err)
	}
	resp, err = rpcerr.Result(&struct{}{}, nil)
	if resp == nil || err != nil {
		t.Fatalf("Result = %v, %v", resp, err)
	}
}

// sentinels is every exported sentinel error of the packages below the services, with the
// code it must surface as. TestEverySentinelIsInTheTable keeps this list complete.
var sentinels = map[string]struct {
	err  error
	code codes.Code
}{
	"lvm.ErrNotFound":         {lvm.ErrNotFound, codes.NotFound},
	"lvm.ErrExists":           {lvm.ErrExists, codes.AlreadyExists},
	"lvm.ErrNoSpace":          {lvm.ErrNoSpace, codes.ResourceExhausted},
	"lvm.ErrShrink":           {lvm.ErrShrink, codes.FailedPrecondition},
	"lvm.ErrInUse":            {lvm.ErrInUse, codes.FailedPrecondition},
	"lvm.ErrInvalidName":      {lvm.ErrInvalidName, codes.InvalidArgument},
	"lvm.ErrInvalidTag":       {lvm.ErrInvalidTag, codes.InvalidArgument},
	"lvm.ErrInvalidSize":      {lvm.ErrInvalidSize, codes.InvalidArgument},
	"nvmet.ErrNotFound":       {nvmet.ErrNotFound, codes.NotFound},
	"nvmet.ErrPortConflict":   {nvmet.ErrPortConflict, codes.FailedPrecondition},
	"nvmet.ErrForeign":        {nvmet.ErrForeign, codes.FailedPrecondition},
	"nvmet.ErrInvalidNQN":     {nvmet.ErrInvalidNQN, codes.InvalidArgument},
	"nvmet.ErrInvalid":        {nvmet.ErrInvalid, codes.InvalidArgument},
	"nvme.ErrNotFound":        {nvme.ErrNotFound, codes.NotFound},
	"nvme.ErrInvalidOption":   {nvme.ErrInvalidOption, codes.InvalidArgument},
	"nvme.ErrStillConnected":  {nvme.ErrStillConnected, codes.Unavailable},
	"nvme.ErrWrongDevice":     {nvme.ErrWrongDevice, codes.FailedPrecondition},
	"nvme.ErrInvalidIdentity": {nvme.ErrInvalidIdentity, codes.FailedPrecondition},
	"contract.ErrBadNodeID":   {contract.ErrBadNodeID, codes.NotFound},
	"contract.ErrBadParameter": {
		contract.ErrBadParameter, codes.InvalidArgument,
	},
	"agentclient.ErrUnknownNode": {agentclient.ErrUnknownNode, codes.NotFound},
	"dm.ErrNotFound":             {dm.ErrNotFound, codes.NotFound},
	"dm.ErrExists":               {dm.ErrExists, codes.AlreadyExists},
	"dm.ErrBusy":                 {dm.ErrBusy, codes.FailedPrecondition},
	"dm.ErrInvalid":              {dm.ErrInvalid, codes.InvalidArgument},
	"thin.ErrIDExists":           {thin.ErrIDExists, codes.AlreadyExists},
	"thin.ErrIDNotFound":         {thin.ErrIDNotFound, codes.NotFound},
	"thin.ErrTransactionID":      {thin.ErrTransactionID, codes.FailedPrecondition},
	"thin.ErrPoolReadOnly":       {thin.ErrPoolReadOnly, codes.FailedPrecondition},
	"pool.ErrNotFound":           {pool.ErrNotFound, codes.NotFound},
	"pool.ErrExists":             {pool.ErrExists, codes.AlreadyExists},
	"pool.ErrNoSpace":            {pool.ErrNoSpace, codes.ResourceExhausted},
	"pool.ErrInUse":              {pool.ErrInUse, codes.FailedPrecondition},
	"pool.ErrInvalid":            {pool.ErrInvalid, codes.InvalidArgument},
	"pool.ErrUnsupported":        {pool.ErrUnsupported, codes.FailedPrecondition},
	"dmthin.ErrForeignDevice":    {dmthin.ErrForeignDevice, codes.FailedPrecondition},
	"dmthin.ErrStale":            {dmthin.ErrStale, codes.FailedPrecondition},
	"dmthin.ErrPoolBusy":         {dmthin.ErrPoolBusy, codes.Unavailable},
	"dmthin.ErrHoldExpired":      {dmthin.ErrHoldExpired, codes.Unavailable},
	"pool.ErrHoldEnded":          {pool.ErrHoldEnded, codes.Aborted},
	"thin.ErrMetadataSnapHeld":   {thin.ErrMetadataSnapHeld, codes.Unavailable},
	"thintools.ErrNoDevice":      {thintools.ErrNoDevice, codes.NotFound},
	"thintools.ErrNotInstalled":  {thintools.ErrNotInstalled, codes.FailedPrecondition},
}

// notRPCErrors are exported sentinels that never reach a caller as an RPC error.
var notRPCErrors = map[string]string{
	"registration.ErrRegistrationFailed": "ends the node plugin process (the kubelet refused its registration); never an RPC answer",
}

func TestEverySentinelMapsToItsCode(t *testing.T) {
	for name, s := range sentinels {
		wrapped := fmt.Errorf("doing something: %w", s.err)
		if got := rpcerr.Code(wrapped); got != s.code {
			t.Errorf("%s surfaces as %v, want %v", name, got, s.code)
		}
	}
}

// TestEverySentinelIsInTheTable finds every exported package-level Err* variable under pkg/
// and requires it in sentinels (or notRPCErrors): a new sentinel without a class would reach
// callers as Internal.
func TestEverySentinelIsInTheTable(t *testing.T) {
	var found []string
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") ||
			strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, ".pb.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					if n.IsExported() && strings.HasPrefix(n.Name, "Err") && f.Name.Name != "rpcerr" {
						found = append(found, f.Name.Name+"."+n.Name)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < len(sentinels) {
		t.Fatalf("found only %d sentinels (%v): is the walk looking at pkg/?", len(found), found)
	}
	for _, name := range found {
		_, mapped := sentinels[name]
		_, exempt := notRPCErrors[name]
		if !mapped && !exempt {
			t.Errorf("%s is not in this test's sentinels table: declare it with rpcerr.Sentinel and add it here with its code", name)
		}
	}
	for name := range sentinels {
		if !slices.Contains(found, name) {
			t.Errorf("%s is in the table but no longer declared", name)
		}
	}
}
