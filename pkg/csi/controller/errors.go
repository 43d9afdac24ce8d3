package controller

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
)

// The controller's own failure classes. Wrap them (fmt.Errorf("...: %w", errX)) or use the
// helpers; toStatus turns them into gRPC codes.
var (
	errInvalid      = errors.New("invalid argument")
	errNotFound     = errors.New("not found")
	errExists       = errors.New("already exists")
	errExhausted    = errors.New("resources exhausted")
	errOutOfRange   = errors.New("out of range")
	errPrecondition = errors.New("failed precondition")
	errUnavailable  = errors.New("unavailable")
	errBadToken     = errors.New("invalid starting token")
)

func classf(class error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", class, fmt.Sprintf(format, args...))
}

func invalidf(format string, args ...any) error  { return classf(errInvalid, format, args...) }
func notFoundf(format string, args ...any) error { return classf(errNotFound, format, args...) }

// sentinelCodes maps the failure classes to codes.
var sentinelCodes = []struct {
	err  error
	code codes.Code
}{
	{errInvalid, codes.InvalidArgument},
	{errNotFound, codes.NotFound},
	{agentclient.ErrUnknownNode, codes.NotFound},
	{errExists, codes.AlreadyExists},
	{errExhausted, codes.ResourceExhausted},
	{errOutOfRange, codes.OutOfRange},
	{errPrecondition, codes.FailedPrecondition},
	{errUnavailable, codes.Unavailable},
	{errBadToken, codes.Aborted},
}

// agentCodes are the agent's status codes passed on unchanged: each means the same to the CO
// as to the controller. Any other agent code (Internal, Unknown, Unimplemented from an older
// agent, PermissionDenied/Unauthenticated from a certificate problem) is the driver's own
// failure: Internal.
var agentCodes = map[codes.Code]bool{
	codes.InvalidArgument:    true,
	codes.NotFound:           true,
	codes.AlreadyExists:      true,
	codes.ResourceExhausted:  true,
	codes.FailedPrecondition: true,
	codes.OutOfRange:         true,
	codes.Aborted:            true,
	codes.Unavailable:        true,
	codes.DeadlineExceeded:   true,
	codes.Canceled:           true,
}

// toStatus is the one place that turns the logic's errors into gRPC status errors: the
// controller's failure classes, errors of agent calls (gRPC statuses, possibly wrapped with
// context), and context errors. Unknown errors are Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range sentinelCodes {
		if errors.Is(err, s.err) {
			return status.Error(s.code, err.Error())
		}
	}
	if s, ok := status.FromError(err); ok {
		if agentCodes[s.Code()] {
			return status.Error(s.Code(), err.Error())
		}
		return status.Error(codes.Internal, err.Error())
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// isCode reports whether err (an agent call's error, possibly wrapped) has code c.
func isCode(err error, c codes.Code) bool {
	s, ok := status.FromError(err)
	return ok && err != nil && s.Code() == c
}
