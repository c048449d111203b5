package httpapi

import "github.com/prometheus/client_golang/prometheus"

// registerIndexMetrics exports the auth index's change feed as
// keygate_index_* metrics, read at scrape time.
func (a *API) registerIndexMetrics() error {
	st := a.indexStatus
	if st == nil {
		return nil
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_index_lag_seconds",
			Help: "Time since the oldest committed change the auth index has not applied (since the last successful read of the change log while the database is unreachable); 0 when caught up.",
		}, func() float64 { return st().Lag.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_index_applied_seq",
			Help: "Sequence number of the last change applied to the auth index.",
		}, func() float64 { return float64(st().Applied) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_index_reloads_total",
			Help: "Full reloads of the auth index (gap in the change log, or a change that kept failing).",
		}, func() float64 { return float64(st().Reloads) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_index_feed_errors_total",
			Help: "Change feed failures: unreadable change log, failed applies, dropped notification listeners, failed reloads.",
		}, func() float64 { return float64(st().Errors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_index_database_reachable",
			Help: "1 if the last read of the change log succeeded, else 0.",
		}, func() float64 {
			if st().DatabaseReachable {
				return 1
			}
			return 0
		}),
	}
	for _, c := range cs {
		if err := a.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
