package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric descriptions of the node's staged volumes, read from the stashes and sysfs when
// scraped.
var (
	descPaths = prometheus.NewDesc("nvmeof_node_volume_paths",
		"Paths (controllers) of each staged volume by state: the kernel's controller states (live, connecting, "+
			"resetting, deleting, dead, ...), and missing for a portal with no controller.", []string{"volume_id", "state"}, nil)
	descAbnormal = prometheus.NewDesc("nvmeof_node_volume_abnormal",
		"1 for each abnormal condition NodeGetVolumeHealth reports for a staged volume, by reason.", []string{"volume_id", "reason"}, nil)
)

// newRepairs is the healer's counter of repairs by action.
func newRepairs() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nvmeof_node_path_repairs_total",
		Help: "Repairs the path healer made, by action: reconnect (a dropped portal), delete (a dead or superseded controller), rescan.",
	}, []string{"action"})
}

// Describe implements prometheus.Collector.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPaths
	ch <- descAbnormal
	n.repairs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	n.repairs.Collect(ch)
	ids, err := n.stash.all()
	if err != nil {
		return
	}
	for _, id := range ids {
		st, err := n.stash.load(id)
		if err != nil || st == nil {
			continue
		}
		ctrls, err := n.opts.Connector.Controllers(st.SubsysNQN)
		if err != nil {
			continue
		}
		states := map[string]int{"live": 0, "missing": len(n.missingPortals(st, ctrls))}
		for _, c := range ctrls {
			states[c.State]++
		}
		for state, count := range states {
			ch <- prometheus.MustNewConstMetric(descPaths, prometheus.GaugeValue, float64(count), id, state)
		}
		entries, err := n.health(st, st.StagingPath)
		if err != nil {
			continue
		}
		for _, e := range entries {
			ch <- prometheus.MustNewConstMetric(descAbnormal, prometheus.GaugeValue, 1, id, e.GetReason())
		}
	}
}
