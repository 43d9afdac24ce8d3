package agentapi

import "fmt"

// Transport names, as StorageClass parameters, publish_context, the agent's portal
// configuration and the kernel's trtype spell them.
const (
	TransportNameTCP  = "tcp"
	TransportNameRDMA = "rdma"
)

// ParseTransport maps a transport name to the API's enum; any other name is an error.
func ParseTransport(s string) (Transport, error) {
	switch s {
	case TransportNameTCP:
		return Transport_TRANSPORT_TCP, nil
	case TransportNameRDMA:
		return Transport_TRANSPORT_RDMA, nil
	}
	return Transport_TRANSPORT_UNSPECIFIED, fmt.Errorf("transport %q: want %s or %s", s, TransportNameTCP, TransportNameRDMA)
}

// TransportName is the inverse of ParseTransport ("" for unspecified).
func TransportName(t Transport) string {
	switch t {
	case Transport_TRANSPORT_TCP:
		return TransportNameTCP
	case Transport_TRANSPORT_RDMA:
		return TransportNameRDMA
	}
	return ""
}
