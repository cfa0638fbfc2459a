package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// The values of --output.
const (
	outputText = "text" // for people: the report as lines and tables
	outputJSON = "json" // for scripts: one JSON document
)

// checkOutput fails for a --output that is neither text nor json.
func (a *app) checkOutput() error {
	if a.output != outputText && a.output != outputJSON {
		return fmt.Errorf("--output %q: use text or json", a.output)
	}
	return nil
}

// write writes a command's report to stdout: with --output text, text
// renders it (nil: the command said everything as it went); with --output
// json, report is one JSON document (its fields snake_case, see report.go),
// so a command calls write once, at its end, also when it failed after its
// report took shape (the report then carries the error). Progress, notes
// and errors go to stderr whatever the format. Not safe for concurrent use.
func (a *app) write(report any, text func(w io.Writer)) error {
	a.wrote = true
	if a.output == outputJSON {
		enc := json.NewEncoder(a.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	if text != nil {
		text(a.env.stdout)
	}
	return nil
}

// errorReport is the JSON document of a command that failed before it had
// a report of its own (a usage error, NATS unreachable, ...).
type errorReport struct {
	Command string `json:"command"`
	Status  string `json:"status"` // always "failed" or "interrupted"
	Error   string `json:"error"`
}

// writeError gives a command that failed without writing its report, with
// --output json, a document all the same: a script reading stdout always
// gets one.
func (a *app) writeError(command, status string, err error) {
	if a.output != outputJSON || a.wrote {
		return
	}
	a.write(errorReport{Command: command, Status: status, Error: err.Error()}, nil)
}
