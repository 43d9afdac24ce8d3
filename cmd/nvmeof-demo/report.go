package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// reporter prints the demo's story: sections, timed steps, progress and details. It is safe
// for concurrent use (progress comes from parallel workers).
type reporter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func newReporter(w io.Writer) *reporter { return &reporter{w: w, start: time.Now()} }

func (r *reporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, format, args...)
	if f, ok := r.w.(*os.File); ok {
		_ = f.Sync()
	}
}

// section starts a numbered part of the story.
func (r *reporter) section(title string) {
	r.printf("\n[%s] %s\n", secs(time.Since(r.start)), title)
}

// step runs fn and prints what it did with how long it took, or that it failed.
func (r *reporter) step(what string, fn func() error) (time.Duration, error) {
	start := time.Now()
	err := fn()
	d := time.Since(start)
	if err != nil {
		r.printf("  %s %s FAILED after %s\n", what, dots(what), secs(d))
		return d, fmt.Errorf("%s: %w", what, err)
	}
	r.printf("  %s %s %8s\n", what, dots(what), secs(d))
	return d, nil
}

// note prints a detail under the current step.
func (r *reporter) note(format string, args ...any) {
	r.printf("      "+format+"\n", args...)
}

// dots pads a step description to a fixed column.
func dots(what string) string {
	const width = 72
	n := width - len([]rune(what))
	if n < 2 {
		n = 2
	}
	return strings.Repeat(".", n)
}

// progress reports "label n/total" every time another step of 1/steps of the work is done.
type progress struct {
	r      *reporter
	label  string
	total  int64
	steps  int64
	mu     sync.Mutex
	done   int64
	shown  int64
	format func(done, total int64) string
}

func (r *reporter) progress(label string, total int64, steps int64, format func(done, total int64) string) *progress {
	if format == nil {
		format = func(done, total int64) string { return fmt.Sprintf("%d/%d", done, total) }
	}
	return &progress{r: r, label: label, total: total, steps: steps, format: format}
}

// add records n more units of work done.
func (p *progress) add(n int64) {
	p.mu.Lock()
	p.done += n
	bucket := p.done * p.steps / max(p.total, 1)
	show := bucket > p.shown // at the end bucket == steps: the last line always shows
	if show {
		p.shown = bucket
	}
	done := p.done
	p.mu.Unlock()
	if show {
		p.r.note("%s %s", p.label, p.format(done, p.total))
	}
}
