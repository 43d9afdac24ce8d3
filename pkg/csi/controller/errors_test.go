package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
)

func TestToStatusMapsEveryErrorClass(t *testing.T) {
	agent := func(c codes.Code) error { return status.Error(c, "agent says so") }
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"invalid", invalidf("bad"), codes.InvalidArgument},
		{"not found", notFoundf("gone"), codes.NotFound},
		{"unknown storage node", fmt.Errorf("x: %w", agentclient.ErrUnknownNode), codes.NotFound},
		{"exists", classf(errExists, "dup"), codes.AlreadyExists},
		{"exhausted", classf(errExhausted, "full"), codes.ResourceExhausted},
		{"out of range", classf(errOutOfRange, "big"), codes.OutOfRange},
		{"precondition", classf(errPrecondition, "published"), codes.FailedPrecondition},
		{"unavailable", classf(errUnavailable, "down"), codes.Unavailable},
		{"bad token", classf(errBadToken, "tok"), codes.Aborted},
		{"agent NotFound, wrapped", fmt.Errorf("storage node s1: %w", agent(codes.NotFound)), codes.NotFound},
		{"agent AlreadyExists", agent(codes.AlreadyExists), codes.AlreadyExists},
		{"agent ResourceExhausted", agent(codes.ResourceExhausted), codes.ResourceExhausted},
		{"agent FailedPrecondition", agent(codes.FailedPrecondition), codes.FailedPrecondition},
		{"agent InvalidArgument", agent(codes.InvalidArgument), codes.InvalidArgument},
		{"agent OutOfRange", agent(codes.OutOfRange), codes.OutOfRange},
		{"agent Unavailable", agent(codes.Unavailable), codes.Unavailable},
		{"agent DeadlineExceeded", agent(codes.DeadlineExceeded), codes.DeadlineExceeded},
		{"agent Internal", agent(codes.Internal), codes.Internal},
		{"agent Unknown", agent(codes.Unknown), codes.Internal},
		{"agent Unimplemented (old agent)", agent(codes.Unimplemented), codes.Internal},
		{"agent PermissionDenied (certificates)", agent(codes.PermissionDenied), codes.Internal},
		{"context deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"context canceled", context.Canceled, codes.Canceled},
		{"anything else", errors.New("surprise"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := toStatus(tc.err)
			if status.Code(got) != tc.want {
				t.Fatalf("toStatus(%v) = %v, want %v", tc.err, got, tc.want)
			}
			if tc.err != nil && status.Convert(got).Message() != tc.err.Error() {
				t.Errorf("message %q, want %q", status.Convert(got).Message(), tc.err.Error())
			}
		})
	}
}
