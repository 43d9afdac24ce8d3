package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// The control channel between the host and a guest is one byte stream (a virtio-serial port in
// the guest, a unix socket on the host) carrying JSON lines. The guest says hello once it
// serves steps; the host then sends requests, each with its own ID, and the guest answers each
// when its step ends. Steps run concurrently, so answers come in any order.

// shutdownStep is the reserved request that ends a guest session: the guest runs its
// cleanups, answers, and powers off.
const shutdownStep = "vmtest.shutdown"

type ctlRequest struct {
	ID   uint64          `json:"id"`
	Step string          `json:"step"`
	Arg  json.RawMessage `json:"arg,omitempty"`
	// Timeout bounds the step in the guest (nanoseconds).
	Timeout time.Duration `json:"timeout"`
}

type ctlReply struct {
	ID     uint64          `json:"id"`
	Hello  bool            `json:"hello,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// lineWriter writes one JSON value per line, from any goroutine.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.w.Write(append(b, '\n'))
	return err
}

// serveCtl is the guest's side: it says hello, then runs each request's step in its own
// goroutine until the shutdown request (or the end of the stream), runs the session's
// cleanups, answers the shutdown and returns. log receives the steps' output.
func serveCtl(rw io.ReadWriter, machine string, log io.Writer) error {
	w := &lineWriter{w: rw}
	if err := w.send(ctlReply{Hello: true}); err != nil {
		return err
	}
	sess := &session{}
	r := bufio.NewReader(rw)
	var wg sync.WaitGroup
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			// The host went away: nobody waits for answers; clean up.
			wg.Wait()
			sess.runCleanups(log)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var req ctlRequest
		if err := json.Unmarshal(line, &req); err != nil {
			fmt.Fprintf(log, "vmtest: unreadable request %q: %v\n", line, err)
			continue
		}
		if req.Step == shutdownStep {
			wg.Wait()
			sess.runCleanups(log)
			return w.send(ctlReply{ID: req.ID, Result: json.RawMessage("null")})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := req.Timeout
			if timeout <= 0 {
				timeout = DefaultStepTimeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			res, err := runStep(ctx, sess, machine, req.Step, req.Arg, log)
			rep := ctlReply{ID: req.ID, Result: res}
			if err != nil {
				rep.Error = err.Error()
			}
			if err := w.send(rep); err != nil {
				fmt.Fprintf(log, "vmtest: answering step %s: %v\n", req.Step, err)
			}
		}()
	}
}

// ctlClient is the host's side of one guest session.
type ctlClient struct {
	w     *lineWriter
	close func() error
	hello chan struct{}
	done  chan struct{} // closed when the stream ended; err says why

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan ctlReply
	err     error
}

func newCtlClient(rw io.ReadWriteCloser) *ctlClient {
	c := &ctlClient{
		w:       &lineWriter{w: rw},
		close:   rw.Close,
		hello:   make(chan struct{}),
		done:    make(chan struct{}),
		pending: map[uint64]chan ctlReply{},
	}
	go c.readLoop(rw)
	return c
}

func (c *ctlClient) readLoop(r io.Reader) {
	br := bufio.NewReader(r)
	helloSeen := false
	var err error
	for {
		var line []byte
		line, err = br.ReadBytes('\n')
		if err != nil {
			break
		}
		var rep ctlReply
		if jerr := json.Unmarshal(line, &rep); jerr != nil {
			err = fmt.Errorf("unreadable answer %q: %w", line, jerr)
			break
		}
		if rep.Hello {
			if !helloSeen {
				helloSeen = true
				close(c.hello)
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[rep.ID]
		delete(c.pending, rep.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the guest closed its control channel")
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.done)
}

// waitHello waits for the guest to serve steps.
func (c *ctlClient) waitHello(ctx context.Context) error {
	select {
	case <-c.hello:
		return nil
	case <-c.done:
		return c.streamErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *ctlClient) streamErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// call sends a request and waits for its answer, for the stream's end, or for ctx's deadline
// plus stepReplyGrace (the guest bounds the step by the same deadline, so it normally answers
// first).
func (c *ctlClient) call(ctx context.Context, step string, arg json.RawMessage) (json.RawMessage, error) {
	timeout := DefaultStepTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	ch := make(chan ctlReply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	if err := c.w.send(ctlRequest{ID: id, Step: step, Arg: arg, Timeout: timeout}); err != nil {
		forget()
		return nil, fmt.Errorf("sending step %s: %w", step, err)
	}
	timer := time.NewTimer(timeout + stepReplyGrace)
	defer timer.Stop()
	cancelled := ctx.Done()
	for {
		select {
		case rep := <-ch:
			if rep.Error != "" {
				return nil, errors.New(rep.Error)
			}
			return rep.Result, nil
		case <-c.done:
			forget()
			return nil, fmt.Errorf("step %s: %w", step, c.streamErr())
		case <-timer.C:
			forget()
			return nil, fmt.Errorf("step %s: no answer within %s", step, (timeout + stepReplyGrace).Round(time.Second))
		case <-cancelled:
			if errors.Is(ctx.Err(), context.Canceled) {
				// The caller gave up; the step runs on in the guest until its deadline.
				forget()
				return nil, fmt.Errorf("step %s: %w", step, ctx.Err())
			}
			cancelled = nil // a deadline: the guest answers at the same moment, or the timer fires
		}
	}
}
