package egress

import (
	"errors"
	"net/http"

	"github.com/modgate/modgate/internal/httperr"
)

// refusalHint says what an operator can change about an egress refusal.
func refusalHint(err error) string {
	var dh *DeniedHostError
	var ae *AddressError
	switch {
	case httperr.Status(err) == http.StatusServiceUnavailable:
		return "the gate has as many CONNECTs open as serve --max-connects allows; " +
			"raise it, or find the clients that hold them"
	case errors.As(err, &dh):
		return "to allow it, add an egress rule for the host and port to the policy file (egress.rules), " +
			"or let clients reach it around the gate (NO_PROXY)"
	case errors.As(err, &ae) && ae.Self:
		return "the client sent the gate a request for the gate itself; check its HTTPS_PROXY and NO_PROXY"
	case errors.As(err, &ae):
		return "the address is in a range refused by default; serve --allow-range opens it"
	}
	return "modgate intercepts this host on port 443 only; check the client's proxy settings"
}
