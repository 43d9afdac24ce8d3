// Package rpcerr is the project's one error vocabulary: the failure classes that the agent, the
// CSI controller and the CSI node service report, their constructors, and the one table that
// turns an error into a gRPC status code.
//
// Code below the services declares its sentinels with a class (Sentinel), so that they keep
// their own identity for errors.Is and still map to the right code wherever they surface:
//
//	var ErrNotFound = rpcerr.Sentinel(rpcerr.ErrNotFound, "logical volume not found")
//
// Service code returns class errors (Invalidf, NotFoundf, ...) or wraps sentinels with
// context (fmt.Errorf("...: %w", err)), and turns every error into a status at the edge with
// Status. Anything the table does not know is Internal: an unclassified failure is the
// driver's own fault, never the caller's.
package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The failure classes. Test for them with errors.Is; make errors of a class with the
// constructors below or Sentinel.
var (
	// ErrInvalid: the request is malformed (InvalidArgument).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the object named does not exist (NotFound).
	ErrNotFound = errors.New("not found")
	// ErrExists: an object of that name exists with other properties (AlreadyExists).
	ErrExists = errors.New("already exists")
	// ErrExhausted: there is no room for it (ResourceExhausted).
	ErrExhausted = errors.New("resources exhausted")
	// ErrOutOfRange: a size or count is beyond what is supported (OutOfRange).
	ErrOutOfRange = errors.New("out of range")
	// ErrPrecondition: the request is valid, but the system is not in a state that allows it;
	// the caller must change that state first (FailedPrecondition).
	ErrPrecondition = errors.New("failed precondition")
	// ErrUnavailable: a transient condition; retrying later may succeed (Unavailable).
	ErrUnavailable = errors.New("unavailable")
	// ErrAborted: a concurrent operation conflicts; retry with back-off (Aborted).
	ErrAborted = errors.New("aborted")
)

// table is the one mapping from errors to codes, searched in order; the first match wins.
// Unavailable comes first: an error that says "state was left behind, retry" must reach the
// caller as retryable even when it also carries the failure that caused it.
var table = []struct {
	err  error
	code codes.Code
}{
	{ErrUnavailable, codes.Unavailable},
	{ErrAborted, codes.Aborted},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
	{ErrInvalid, codes.InvalidArgument},
	{ErrNotFound, codes.NotFound},
	{ErrExists, codes.AlreadyExists},
	{ErrExhausted, codes.ResourceExhausted},
	{ErrOutOfRange, codes.OutOfRange},
	{ErrPrecondition, codes.FailedPrecondition},
	// Kernel errnos that mean a target or network is not reachable now.
	{syscall.ECONNREFUSED, codes.Unavailable},
	{syscall.EHOSTUNREACH, codes.Unavailable},
	{syscall.ENETUNREACH, codes.Unavailable},
	{syscall.ETIMEDOUT, codes.Unavailable},
}

// remoteCodes are the codes of a remote call's status (an agent's answer to the controller)
// that keep their meaning when passed on. Any other code (Internal, Unknown, Unimplemented from
// an older peer, PermissionDenied or Unauthenticated from a certificate problem, DataLoss) is
// the driver's own failure: Internal.
var remoteCodes = map[codes.Code]bool{
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

// Code is the gRPC code of err: OK for nil, the first class or errno of the table err wraps,
// else the code of a gRPC status err wraps (see remoteCodes), else Internal.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	if s, ok := status.FromError(err); ok {
		if remoteCodes[s.Code()] {
			return s.Code()
		}
	}
	return codes.Internal
}

// Status turns err into a gRPC status error with Code(err) and err's message; nil stays nil.
// Every service method returns its errors through Status.
func Status(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(Code(err), err.Error())
}

// IsCode reports whether err (a remote call's error, possibly wrapped) carries code c.
func IsCode(err error, c codes.Code) bool {
	if err == nil {
		return false
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == c
}

// Sentinel returns a sentinel error of class: errors.Is(s, class) holds, and its message is
// msg alone.
func Sentinel(class error, msg string) error { return &sentinel{msg: msg, class: class} }

type sentinel struct {
	msg   string
	class error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.class }

// Classf returns an error of class with a formatted message ("<class>: <message>").
func Classf(class error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", class, fmt.Sprintf(format, args...))
}

// Invalidf returns an ErrInvalid error.
func Invalidf(format string, args ...any) error { return Classf(ErrInvalid, format, args...) }

// NotFoundf returns an ErrNotFound error.
func NotFoundf(format string, args ...any) error { return Classf(ErrNotFound, format, args...) }

// Existsf returns an ErrExists error.
func Existsf(format string, args ...any) error { return Classf(ErrExists, format, args...) }

// Exhaustedf returns an ErrExhausted error.
func Exhaustedf(format string, args ...any) error { return Classf(ErrExhausted, format, args...) }

// OutOfRangef returns an ErrOutOfRange error.
func OutOfRangef(format string, args ...any) error { return Classf(ErrOutOfRange, format, args...) }

// Preconditionf returns an ErrPrecondition error.
func Preconditionf(format string, args ...any) error {
	return Classf(ErrPrecondition, format, args...)
}

// Unavailablef returns an ErrUnavailable error.
func Unavailablef(format string, args ...any) error {
	return Classf(ErrUnavailable, format, args...)
}

// Abortedf returns an ErrAborted error.
func Abortedf(format string, args ...any) error { return Classf(ErrAborted, format, args...) }

// Result is the edge of a service method: resp and nil, or the zero response and Status(err).
func Result[T any](resp T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, Status(err)
	}
	return resp, nil
}
