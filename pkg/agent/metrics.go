package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric descriptions of the agent's state, read from its index and its last reading of the
// pool's usage when scraped (a scrape never asks the pool or configfs).
var (
	descPoolBytes = prometheus.NewDesc("nvmeof_agent_pool_bytes",
		"Size of the thin pool's data and metadata space, in bytes.", []string{"space"}, nil)
	descPoolUsedBytes = prometheus.NewDesc("nvmeof_agent_pool_used_bytes",
		"Bytes of the thin pool's data and metadata space in use (physical).", []string{"space"}, nil)
	descProvisionedBytes = prometheus.NewDesc("nvmeof_agent_provisioned_bytes",
		"Sum of the virtual sizes of every volume and snapshot, in bytes.", nil, nil)
	descAvailableBytes = prometheus.NewDesc("nvmeof_agent_available_bytes",
		"What may still be provisioned: the overcommit headroom capped by the data space left below pool.maxFillPercent.", nil, nil)
	descObjects = prometheus.NewDesc("nvmeof_agent_objects",
		"Objects the agent holds: volumes, snapshots, exports (volumes published to at least one host), "+
			"publications (volume and host pairs) and hosts (host NQNs with a publication).", []string{"kind"}, nil)
)

// agentMetrics are the agent's counters.
type agentMetrics struct {
	reconciles *prometheus.CounterVec
	repaired   prometheus.Counter
	// writeHold is how long group snapshots held their volumes' writes; holdsExpired counts
	// the holds that ended at their timeout, before their snapshots.
	writeHold    prometheus.Histogram
	holdsExpired prometheus.Counter
}

func newMetrics() *agentMetrics {
	return &agentMetrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nvmeof_agent_reconcile_runs_total", Help: "Reconciler runs, by result (ok, error).",
		}, []string{"result"}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nvmeof_agent_reconcile_repaired_total",
			Help: "Subsystems the reconciler created or removed because configfs had drifted from the records.",
		}),
		writeHold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nvmeof_agent_write_hold_seconds",
			Help:    "How long a group snapshot held the writes of its volumes on this storage node.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8), // 1 ms … 16 s
		}),
		holdsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nvmeof_agent_write_holds_expired_total",
			Help: "Write holds of group snapshots that ended at their timeout before their snapshots were made (writes resumed; the group snapshot failed).",
		}),
	}
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPoolBytes, descPoolUsedBytes, descProvisionedBytes, descAvailableBytes, descObjects} {
		ch <- d
	}
	s.metrics.reconciles.Describe(ch)
	s.metrics.repaired.Describe(ch)
	s.metrics.writeHold.Describe(ch)
	s.metrics.holdsExpired.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	var u usageAt
	if last := s.usage.Load(); last != nil {
		u = *last
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(descPoolBytes, u.u.DataBytes, "data")
	gauge(descPoolBytes, u.u.MetadataBytes, "metadata")
	gauge(descPoolUsedBytes, u.u.DataUsedBytes, "data")
	gauge(descPoolUsedBytes, u.u.MetadataUsedBytes, "metadata")
	provisioned := s.idx.provisionedBytes()
	gauge(descProvisionedBytes, provisioned)
	_, avail := s.capacity(u.u, provisioned)
	gauge(descAvailableBytes, avail)
	c := s.idx.counts()
	gauge(descObjects, int64(c.volumes), "volumes")
	gauge(descObjects, int64(c.snapshots), "snapshots")
	gauge(descObjects, int64(c.exported), "exports")
	gauge(descObjects, int64(c.publications), "publications")
	gauge(descObjects, int64(c.hosts), "hosts")
	s.metrics.reconciles.Collect(ch)
	s.metrics.repaired.Collect(ch)
	s.metrics.writeHold.Collect(ch)
	s.metrics.holdsExpired.Collect(ch)
}
