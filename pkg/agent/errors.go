package agent

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// The agent's own failure classes; wrap them with fmt.Errorf("...: %w", errX).
var (
	errInvalid      = errors.New("invalid argument")
	errNotFound     = errors.New("not found")
	errConflict     = errors.New("already exists with different properties")
	errNoSpace      = errors.New("not enough space")
	errPrecondition = errors.New("failed precondition")
)

// invalidf returns an InvalidArgument-class error.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// toStatus is the one place that turns internal errors into gRPC status codes. Unknown errors
// are Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, errInvalid), errors.Is(err, lvm.ErrInvalidName), errors.Is(err, nvmet.ErrInvalidNQN):
		code = codes.InvalidArgument
	case errors.Is(err, errNotFound), errors.Is(err, lvm.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, errConflict), errors.Is(err, lvm.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, errNoSpace), errors.Is(err, lvm.ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, errPrecondition), errors.Is(err, lvm.ErrShrink):
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}
