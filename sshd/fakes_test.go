package sshd

import (
	"context"

	"github.com/keygate/keygate/keystore"
)

type nopProjects struct{}

func (nopProjects) ProjectByPath(context.Context, string) (*keystore.Project, error) {
	return nil, keystore.ErrNotFound
}
