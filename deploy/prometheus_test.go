package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	rulesFile     = "prometheus/readside-rules.yaml"
	rulesTestFile = "prometheus/readside-rules.test.yaml"
	dashboardFile = "grafana/dashboards/readside.json"
)

// promtool finds promtool, failing with how to install it when it is missing.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: `bash scripts/testenv.sh up` installs it (Debian's prometheus package), " +
			"or `apt-get install prometheus`; make test runs testenv.sh first")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = filepath.Dir(rulesFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// The alert rules are valid (promtool check rules), and behave as their tests say
// (promtool test rules: input series, and the alerts expected at given times, with
// their annotations rendered).
func TestAlertRules(t *testing.T) {
	runPromtool(t, "check", "rules", filepath.Base(rulesFile))
	runPromtool(t, "test", "rules", filepath.Base(rulesTestFile))
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// Grafana's variables, replaced by what they stand for so that promtool can parse the
// query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$projection", ".*")

// Every query of the dashboard is valid PromQL: promtool checks them as the
// expressions of recording rules. Every panel has a title and a query.
func TestDashboardQueries(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard has no uid or title: provisioning needs a stable uid")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d: no title or no query", p.ID)
		}
		for i, tg := range p.Targets {
			expr, err := json.Marshal(grafanaVars.Replace(tg.Expr))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&rules, "      - record: dashboard:panel_%d_%d\n        expr: %s\n", p.ID, i, expr)
			n++
		}
	}
	if n < 20 {
		t.Errorf("%d queries, fewer than the dashboard should have", n)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-rules.yaml"), []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool(t), "check", "rules", filepath.Join(dir, "dashboard-rules.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("the dashboard's queries, as rules:\n%s\npromtool check rules: %v\n%s", rules.String(), err, out)
	}
}

var metricName = regexp.MustCompile(`\breadside_[a-z0-9_]+\b`)

// usedMetrics returns every readside_ metric name the rules and the dashboard use, each
// with where.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(rules), "\n") {
		// The rules' expressions, not their prose (which names e.g. readside_partial).
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "expr:"); ok {
			for _, m := range metricName.FindAllString(e, -1) {
				used[m] = append(used[m], rulesFile)
			}
		}
	}
	// Multi-line expressions (expr: |).
	for _, block := range regexp.MustCompile(`(?m)expr: \|\n((?:\s{10,}.*\n)+)`).FindAllStringSubmatch(string(rules), -1) {
		for _, m := range metricName.FindAllString(block[1], -1) {
			used[m] = append(used[m], rulesFile)
		}
	}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], fmt.Sprintf("%s panel %q", dashboardFile, p.Title))
			}
		}
	}
	return used
}
