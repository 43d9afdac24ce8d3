package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The node's stage phases (pkg/csi/node logs them by these names), with what each covers.
var stagePhases = []struct{ name, what string }{
	{"connect", "connect (every portal, namespace device)"},
	{"probe", "probe (blkid)"},
	{"mount", "mount (fsck, or mkfs; mount)"},
	{"resize", "resize (resize2fs)"},
}

// breakdown says where one environment's time went, on one line.
func (e *devEnv) breakdown() string {
	t := e.v.took
	var parts []string
	for _, p := range e.stage {
		parts = append(parts, p.name+" "+ms(p.took))
	}
	stage := ms(t.stage)
	if len(parts) > 0 {
		stage += " (" + strings.Join(parts, ", ") + ")"
	}
	return fmt.Sprintf("%s: CreateVolume %s, ControllerPublishVolume %s, NodeStageVolume %s, NodePublishVolume %s",
		e.name, ms(t.create), ms(t.attach), stage, ms(t.publish))
}

// breakdownRow is one line of the table of where the time went: one environment alone, and
// the median and slowest of those made at once.
type breakdownRow struct {
	what            string
	one             time.Duration
	median, slowest time.Duration
	// known: every environment had this part (a phase the node did not log is missing).
	known bool
}

// breakdownRows lays out the table: each call, the node's stage phases under NodeStageVolume
// (and the rest of it: the RPC, locks, the stash), and the whole.
func breakdownRows(one *devEnv, many []*devEnv) []breakdownRow {
	row := func(what string, part func(*devEnv) (time.Duration, bool)) breakdownRow {
		r := breakdownRow{what: what}
		o, ok := part(one)
		all := durations(many, part)
		if !ok || len(all) != len(many) || len(all) == 0 {
			return r
		}
		return breakdownRow{what: what, one: o, median: median(all), slowest: all[len(all)-1], known: true}
	}
	call := func(f func(callTimes) time.Duration) func(*devEnv) (time.Duration, bool) {
		return func(e *devEnv) (time.Duration, bool) { return f(e.v.took), true }
	}
	rows := []breakdownRow{
		row("CreateVolume (clone of the snapshot)", call(func(t callTimes) time.Duration { return t.create })),
		row("ControllerPublishVolume (export, allow host)", call(func(t callTimes) time.Duration { return t.attach })),
		row("NodeStageVolume", call(func(t callTimes) time.Duration { return t.stage })),
	}
	for _, p := range stagePhases {
		rows = append(rows, row("  "+p.what, func(e *devEnv) (time.Duration, bool) { return phaseOf(e.stage, p.name) }))
	}
	rows = append(rows,
		row("  rest (RPC, locks, stash)", func(e *devEnv) (time.Duration, bool) {
			if len(e.stage) == 0 {
				return 0, false
			}
			rest := e.v.took.stage
			for _, p := range e.stage {
				rest -= p.took
			}
			return max(rest, 0), true
		}),
		row("NodePublishVolume (bind mount)", call(func(t callTimes) time.Duration { return t.publish })),
		row("CreateVolume to mounted", func(e *devEnv) (time.Duration, bool) { return e.took, true }),
	)
	return slices.DeleteFunc(rows, func(r breakdownRow) bool {
		return !r.known && strings.HasPrefix(r.what, "  ") // a phase this node version does not log
	})
}

// phaseSpread lists one stage phase of every environment, fastest first: "connect, each
// environment, fastest first: 0.31s 0.62s …" (a staircase shows the phase serialized).
func phaseSpread(envs []*devEnv, name string) string {
	all := durations(envs, func(e *devEnv) (time.Duration, bool) { return phaseOf(e.stage, name) })
	each := make([]string, len(all))
	for i, d := range all {
		each[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return fmt.Sprintf("NodeStage %s phase of each, fastest first (s): %s", name, strings.Join(each, " "))
}

// medianPhases says the median of each stage phase over envs: "connect 0.31s, probe …".
func medianPhases(envs []*devEnv) string {
	var parts []string
	for _, p := range stagePhases {
		all := durations(envs, func(e *devEnv) (time.Duration, bool) { return phaseOf(e.stage, p.name) })
		if len(all) > 0 {
			parts = append(parts, p.name+" "+ms(median(all)))
		}
	}
	return strings.Join(parts, ", ")
}

// durations returns part of every environment that has it, sorted.
func durations(envs []*devEnv, part func(*devEnv) (time.Duration, bool)) []time.Duration {
	var out []time.Duration
	for _, e := range envs {
		if e == nil {
			continue
		}
		if d, ok := part(e); ok {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// median of sorted durations: the middle one (the lower of the two middle ones).
func median(sorted []time.Duration) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)/2]
}

// ratio is a / b, 0 when b is 0.
func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// goal says whether a measured ratio or duration met its goal (at most want). The demo
// reports its goals; it never fails on them.
func goal(got, want float64) string {
	if got <= want {
		return "met"
	}
	return "not met"
}
