package node

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// Sentinels of the node logic; toStatus maps them (and those of package nvme) to codes.
var (
	errInvalid      = errors.New("invalid argument")
	errNotFound     = errors.New("not found")
	errExists       = errors.New("already exists with other properties")
	errPrecondition = errors.New("failed precondition")
	errUnavailable  = errors.New("unavailable, retry later")
	// errLeftBehind marks a failed stage that left state (a connection, a mount, the stash)
	// for NodeUnstageVolume to clean up. It maps to Unavailable so that kubelet keeps the
	// volume's staging state uncertain and does call NodeUnstageVolume.
	errLeftBehind = errors.New("state left for NodeUnstageVolume")
)

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, a...))
}

func notFoundf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errNotFound, fmt.Sprintf(format, a...))
}

func existsf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errExists, fmt.Sprintf(format, a...))
}

func preconditionf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errPrecondition, fmt.Sprintf(format, a...))
}

// toStatus is the one place that turns the node logic's errors into gRPC status errors.
// Errors that already carry a status keep it; anything unrecognized is Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, errLeftBehind), errors.Is(err, nvme.ErrStillConnected), errors.Is(err, errUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, errInvalid), errors.Is(err, nvme.ErrInvalidOption), errors.Is(err, contract.ErrBadParameter):
		return codes.InvalidArgument
	case errors.Is(err, errNotFound):
		return codes.NotFound
	case errors.Is(err, errExists):
		return codes.AlreadyExists
	case errors.Is(err, errPrecondition), errors.Is(err, nvme.ErrWrongDevice):
		return codes.FailedPrecondition
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ETIMEDOUT):
		return codes.Unavailable
	}
	return codes.Internal
}
