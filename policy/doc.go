// Package policy holds modgate's rules: which modules and versions a
// company may use, and which other hosts may be reached through the gate.
//
// A Policy is parsed from a YAML file. Decide and DecideHost are pure
// functions of the policy and their input, and return a Decision that
// carries the rule and the reason. In report mode a denial is only
// reported (Decision.WouldDeny) and the request goes through.
package policy
