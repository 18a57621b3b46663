// Package policy holds modgate's rules: which modules and versions a
// company may use, and which other hosts may be reached through the gate.
//
// A Policy is parsed from a YAML file (Parse, strict, with errors that name
// the field and line). Decide and DecideHost are pure functions of the
// policy and their input, and return a Decision that carries the rule and
// the reason; Decide documents the evaluation order, and Header says it in
// every file modgate writes. In report mode a denial is only reported
// (Decision.WouldDeny) and the request goes through.
//
// A File keeps a policy on disk: it takes hand edits into effect (Watch),
// refuses invalid ones while the last good policy stays in force, and
// writes changes atomically (Update, Replace).
package policy
