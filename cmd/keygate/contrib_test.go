package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// contrib/ is checked like code: the Prometheus alert rules with promtool
// (Debian's prometheus package; .ci/run installs it), the Grafana
// dashboard as JSON, and every metric either names against the metrics
// keygate exports.

var metricRef = regexp.MustCompile(`\bkeygate_[a-z0-9_]+`)

// exportedMetrics collects the metric names keygate's code registers (the
// string literals "keygate_…" outside tests), with a histogram's series.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	lit := regexp.MustCompile(`"(keygate_[a-z0-9_]+)"`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+s] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"keygate_build_info", "keygate_audit_stream_queued", "keygate_ssh_key_policy_refusals_total", "keygate_index_lag_seconds"} {
		if !names[must] {
			t.Fatalf("the scan of the code missed %s: it is broken", must)
		}
	}
	return names
}

func checkRefs(t *testing.T, file, text string, exported map[string]bool) {
	t.Helper()
	refs := map[string]bool{}
	for _, r := range metricRef.FindAllString(text, -1) {
		refs[r] = true
	}
	if len(refs) == 0 {
		t.Fatalf("%s names no keygate metric", file)
	}
	var missing []string
	for r := range refs {
		if !exported[r] {
			missing = append(missing, r)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s names metrics keygate does not export: %v", file, missing)
	}
}

func TestContribAlertRules(t *testing.T) {
	t.Parallel()
	const rules = "../../contrib/prometheus/keygate-alerts.yml"
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, rules, string(b), exportedMetrics(t))
	for _, want := range []string{"KeygateIndexLagging", "KeygateDatabaseUnreachable", "KeygateAuditStreamBacklog", "KeygatePenaltySurge", "KeygateCertificateExpiresSoon"} {
		if !strings.Contains(string(b), "alert: "+want+"\n") {
			t.Errorf("%s has no %s alert", rules, want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian prometheus; .ci/run installs it)")
	}
	for _, args := range [][]string{{"check", "rules", "keygate-alerts.yml"}, {"test", "rules", "keygate-alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../contrib/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestContribGrafanaDashboard(t *testing.T) {
	t.Parallel()
	const file = "../../contrib/grafana/keygate-dashboard.json"
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no title, uid or panels", file)
	}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	checkRefs(t, file, strings.Join(exprs, "\n"), exportedMetrics(t))
	// Panels are in a sensible order: the streaming and policy metrics are shown.
	for _, want := range []string{"keygate_audit_stream_queued", "keygate_ssh_key_policy_refusals_total", "keygate_build_info"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not show %s", file, want)
		}
	}
}
