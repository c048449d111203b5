package keystore

import (
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/keystore/pgtest"
)

// onEachBackend runs test in parallel on a fresh SQLite file and a fresh
// PostgreSQL database, passing each one's DSN.
func onEachBackend(t *testing.T, test func(t *testing.T, dsn string)) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			dsn := filepath.Join(t.TempDir(), "keygate.db")
			if backend == "postgres" {
				dsn = pgtest.NewDatabase(t)
			}
			test(t, dsn)
		})
	}
}
