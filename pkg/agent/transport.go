package agent

import (
	"fmt"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// ParseTransport maps "tcp" and "rdma" to the API's enum.
func ParseTransport(s string) (agentapi.Transport, error) {
	switch s {
	case "tcp":
		return agentapi.Transport_TRANSPORT_TCP, nil
	case "rdma":
		return agentapi.Transport_TRANSPORT_RDMA, nil
	}
	return agentapi.Transport_TRANSPORT_UNSPECIFIED, fmt.Errorf("transport %q: want tcp or rdma", s)
}

// TransportName is the inverse of ParseTransport ("" for unspecified).
func TransportName(t agentapi.Transport) string {
	switch t {
	case agentapi.Transport_TRANSPORT_TCP:
		return "tcp"
	case agentapi.Transport_TRANSPORT_RDMA:
		return "rdma"
	}
	return ""
}
