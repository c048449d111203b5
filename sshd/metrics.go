package sshd

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/keystore"
)

type metrics struct {
	authAttempts *prometheus.CounterVec
	authLatency  prometheus.Histogram
	connections  prometheus.Gauge
	gitOps       *prometheus.CounterVec

	forwards       *prometheus.CounterVec
	forwardsActive prometheus.Gauge
	forwardBytes   *prometheus.CounterVec

	panics            prometheus.Counter
	keepaliveTimeouts prometheus.Counter

	unauthenticated prometheus.Gauge
	preauthRefusals *prometheus.CounterVec
	stalls          prometheus.Counter
	// revoked counts what revalidation ended, by scope: connection, git
	// (a git session) or forward.
	revoked *prometheus.CounterVec
	// policyRefusals counts logins and git commands refused by a key
	// policy, by rule and scope (instance, group).
	policyRefusals *prometheus.CounterVec

	principalRefusals *prometheus.CounterVec

	// earlyDrops counts connections refused at admission by reason
	// (per_source_cap, random_early_drop, full); spared counts those a
	// trusted source was admitted despite (random_early_drop, full).
	earlyDrops *prometheus.CounterVec
	spared     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		authAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_ssh_auth_attempts_total", Help: "SSH authentication decisions by method and result.",
		}, []string{"method", "result"}),
		authLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "keygate_ssh_auth_decision_seconds", Help: "Time to decide an SSH authentication (after signature verification).",
			Buckets: []float64{1e-7, 5e-7, 1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2},
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_ssh_connections", Help: "Open SSH connections.",
		}),
		gitOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_git_operations_total", Help: "git commands over SSH by service and result.",
		}, []string{"service", "result"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_bastion_forwards_total", Help: "direct-tcpip forwarding requests by result (accepted, refused, limited, unreachable).",
		}, []string{"result"}),
		forwardsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_bastion_forwards_active", Help: "Open forwarded connections.",
		}),
		forwardBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_bastion_forward_bytes_total", Help: "Bytes forwarded, by direction (in: client to destination, out: destination to client).",
		}, []string{"direction"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_ssh_handler_panics_total", Help: "Panics recovered in SSH handlers (each closed its connection).",
		}),
		keepaliveTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_ssh_keepalive_timeouts_total", Help: "Connections closed because keepalives went unanswered.",
		}),
		unauthenticated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_ssh_unauthenticated_connections", Help: "SSH connections in flight that have not authenticated yet.",
		}),
		preauthRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_ssh_preauth_refusals_total", Help: "SSH connections refused before authentication, by reason (max_startups, per_source_max_startups, per_source_penalty, max_auth_requests, proxy_protocol).",
		}, []string{"reason"}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_ssh_idle_timeouts_total", Help: "Connections closed because their git command moved no data for the idle timeout.",
		}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_ssh_access_ended_total", Help: "Open connections, git sessions and forwards ended because a change took their access away, by scope (connection, git, forward).",
		}, []string{"scope"}),
		policyRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_ssh_key_policy_refusals_total", Help: "Logins (scope instance) and git commands (scope group) refused by a key policy, by the rule broken.",
		}, []string{"rule", "scope"}),
		principalRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_ssh_principal_limit_refusals_total", Help: "Logins and git commands refused at a per-principal cap, by limit (connections, git_processes).",
		}, []string{"limit"}),
		earlyDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_ssh_early_drops_total", Help: "New SSH connections refused before key exchange for capacity, by reason: per_source_cap (the source holds its share of unauthenticated connections), random_early_drop (MaxStartups between start and full), full (MaxStartups full, and the trusted reserve when the source was trusted).",
		}, []string{"reason"}),
		spared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_ssh_early_drops_spared_total", Help: "New SSH connections admitted because their source was trusted (a recent successful login) that an unknown source would have lost, by reason (random_early_drop, full: admitted into the trusted reserve).",
		}, []string{"reason"}),
	}
	for _, l := range []string{dropPerSourceCap, dropRandom, dropFull} {
		m.earlyDrops.WithLabelValues(l) // every series from the start
	}
	for _, l := range []string{dropRandom, dropFull} {
		m.spared.WithLabelValues(l)
	}
	for _, l := range []string{limitConnections, limitGitProcesses} {
		m.principalRefusals.WithLabelValues(l) // both series from the start
	}
	for _, r := range keystore.PolicyRules() {
		for _, scope := range []string{"instance", "group"} {
			m.policyRefusals.WithLabelValues(r.Label(), scope)
		}
	}
	for _, c := range []prometheus.Collector{m.policyRefusals, m.earlyDrops, m.spared, m.principalRefusals, m.revoked, m.authAttempts, m.authLatency, m.connections, m.gitOps, m.forwards, m.forwardsActive, m.forwardBytes, m.panics, m.keepaliveTimeouts, m.unauthenticated, m.preauthRefusals, m.stalls} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// registerPenaltyMetrics exports the per-source penalty state, computed on
// each scrape: sources tracked, penalised now (refused before key exchange)
// and trusted now (a login succeeded from them within the trust window).
func (s *Server) registerPenaltyMetrics(reg prometheus.Registerer) error {
	for _, g := range []struct {
		name, help string
		pick       func(tracked, penalised, trusted int) int
	}{
		{"keygate_ssh_sources_tracked", "Source addresses (IPv4, IPv6 /64) with per-source state.", func(a, _, _ int) int { return a }},
		{"keygate_ssh_sources_penalised", "Sources refused before key exchange now: only failures, budget spent, not exempt.", func(_, b, _ int) int { return b }},
		{"keygate_ssh_sources_trusted", "Sources with a successful login within the trust window (never penalised for failures).", func(_, _, c int) int { return c }},
	} {
		pick := g.pick
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, func() float64 {
			return float64(pick(s.gate.penaltyState(s.cfg.Now())))
		})); err != nil {
			return err
		}
	}
	return nil
}
