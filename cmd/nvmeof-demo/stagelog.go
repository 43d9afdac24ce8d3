package main

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stageLog sees the log lines of the agent and the plugin on their way to demo.log and keeps,
// for each volume, where its NodeStageVolume spent its time. The node logs one line per
// stage, in klog's key="value" form:
//
//	"Staged filesystem volume" volumeID="demo-storage/vol-…" … took="connect=95ms probe=40ms mount=310ms resize=120ms"
//
// connect is every portal connected and the namespace device present, probe blkid, mount
// fsck (or mkfs) and mount, resize resize2fs. It is safe for concurrent use.
type stageLog struct {
	mu      sync.Mutex
	partial []byte
	byID    map[string][]phase
}

// phase is one named part of a call and how long it took.
type phase struct {
	name string
	took time.Duration
}

func newStageLog() *stageLog { return &stageLog{byID: map[string][]phase{}} }

// Write takes log output; whole lines are looked at, a partial one waits for its end.
func (s *stageLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		if id, phases, ok := parseStageLine(string(s.partial[:i])); ok {
			s.byID[id] = phases
		}
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) == 0 {
		s.partial = nil // let a large buffer go
	}
	return len(p), nil
}

// phases returns the stage phases logged for a volume ID, nil if none (yet).
func (s *stageLog) phases(id string) []phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

// parseStageLine reads the volume ID and the phases of a "Staged … volume" line.
func parseStageLine(line string) (string, []phase, bool) {
	if !strings.Contains(line, `] "Staged `) {
		return "", nil, false
	}
	id, ok := klogValue(line, "volumeID")
	if !ok {
		return "", nil, false
	}
	took, ok := klogValue(line, "took")
	if !ok {
		return "", nil, false
	}
	var out []phase
	for _, f := range strings.Fields(took) {
		name, v, ok := strings.Cut(f, "=")
		d, err := time.ParseDuration(v)
		if !ok || err != nil || d < 0 {
			return "", nil, false
		}
		out = append(out, phase{name, d})
	}
	return id, out, len(out) > 0
}

// klogValue returns the quoted value of key in a klog line (` key="value"`).
func klogValue(line, key string) (string, bool) {
	_, rest, ok := strings.Cut(line, " "+key+`="`)
	if !ok {
		return "", false
	}
	q, err := strconv.QuotedPrefix(`"` + rest)
	if err != nil {
		return "", false
	}
	v, err := strconv.Unquote(q)
	return v, err == nil
}

// phaseOf returns the duration of the named phase, and whether it was there.
func phaseOf(phases []phase, name string) (time.Duration, bool) {
	for _, p := range phases {
		if p.name == name {
			return p.took, true
		}
	}
	return 0, false
}
