package policy

// Action is what a rule does with what it matches.
type Action string

// The actions of a rule.
const (
	Allow Action = "allow"
	Deny  Action = "deny"
)

// Mode says whether denials are enforced or only reported.
type Mode string

// The modes of a policy (and of its egress section).
const (
	Enforce Mode = "enforce"
	Report  Mode = "report"
)

// Decision is the outcome of a policy decision, with its reason.
type Decision struct {
	// Allowed is what the gate does: false only for an enforced denial.
	Allowed bool `json:"allowed"`
	// Action is what the policy says, whatever the mode.
	Action Action `json:"action"`
	// WouldDeny reports a denial that report mode let through.
	WouldDeny bool `json:"would_deny,omitempty"`
	// Rule is the id of the deciding rule, or one of the built-in names
	// "default", "retracted", "cooldown".
	Rule string `json:"rule"`
	// Reason explains the decision to a person.
	Reason string `json:"reason"`
}
