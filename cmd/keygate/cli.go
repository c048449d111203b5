package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// The admin command line (issue 21 §6): `keygate users|keys|groups|tokens|cas
// VERB …`, a REST client of a running keygate. Tables by default, --json
// for scripts, the API's own error text on failure (exit 1; a wrong
// command line exits 2).

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// adminCommand is one VERB of a resource.
type adminCommand struct {
	usage string // "create USERNAME --email EMAIL [--name NAME] [--key FILE.pub] [--admin]"
	help  string
	// args is how many positional arguments it takes.
	args int
	// flags declares its own flags.
	flags func(fs *flag.FlagSet)
	// run does it; pos holds the positional arguments.
	run func(ctx context.Context, c *client, out *output, pos []string) error
}

// output prints a table or the API's JSON.
type output struct {
	w    io.Writer
	json bool
}

func (o *output) print(v any, header []string, row func(m map[string]any) []string) error {
	if o.json {
		return printJSON(o.w, v)
	}
	var items []map[string]any
	switch x := v.(type) {
	case map[string]any:
		items = []map[string]any{x}
	case []map[string]any:
		items = x
	}
	rows := make([][]string, len(items))
	for i, m := range items {
		rows[i] = row(m)
	}
	table(o.w, header, rows)
	return nil
}

func userRow(m map[string]any) []string {
	return []string{str(m["id"]), str(m["username"]), str(m["name"]), str(m["email"]), str(m["state"]), str(m["is_admin"])}
}

var userHeader = []string{"ID", "USERNAME", "NAME", "EMAIL", "STATE", "ADMIN"}

func keyRow(m map[string]any) []string {
	fields := strings.Fields(str(m["key"]))
	typ := "-"
	if len(fields) > 0 {
		typ = fields[0]
	}
	return []string{str(m["id"]), str(m["title"]), typ, str(m["usage_type"]), str(m["expires_at"]), str(m["created_at"])}
}

var keyHeader = []string{"ID", "TITLE", "TYPE", "USAGE", "EXPIRES", "CREATED"}

// readKeyFile reads a public key file ("-" for standard input).
func readKeyFile(name string) (string, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// keyTitle is a key's title: its comment, else the file's name.
func keyTitle(key, file string) string {
	if f := strings.Fields(key); len(f) > 2 {
		return strings.Join(f[2:], " ")
	}
	return strings.TrimSuffix(filepath.Base(file), ".pub")
}

func adminCommands() map[string]map[string]*adminCommand {
	var (
		email, name, keyFile, title, expires, usage, search string
		admin                                               bool
		scopes                                              listFlag
		user                                                string
	)
	addKey := func(ctx context.Context, c *client, uid int64, file string) (map[string]any, error) {
		key, err := readKeyFile(file)
		if err != nil {
			return nil, err
		}
		t := title
		if t == "" {
			t = keyTitle(key, file)
		}
		form := url.Values{"title": {t}, "key": {key}}
		if expires != "" {
			form.Set("expires_at", expires)
		}
		if usage != "" {
			form.Set("usage_type", usage)
		}
		var k map[string]any
		_, err = c.do(ctx, "POST", fmt.Sprintf("/users/%d/keys", uid), form, &k)
		return k, err
	}
	keyFlags := func(fs *flag.FlagSet) {
		fs.StringVar(&title, "title", "", "the key's title (default: its comment, else the file name)")
		fs.StringVar(&expires, "expires-at", "", "the key's expiry date, YYYY-MM-DD")
		fs.StringVar(&usage, "usage-type", "", "auth, signing or auth_and_signing (default)")
	}
	setState := func(verb string) func(ctx context.Context, c *client, out *output, pos []string) error {
		return func(ctx context.Context, c *client, out *output, pos []string) error {
			uid, err := c.userID(ctx, pos[0])
			if err != nil {
				return err
			}
			if _, err := c.do(ctx, "POST", fmt.Sprintf("/users/%d/%s", uid, verb), nil, nil); err != nil {
				return err
			}
			var u map[string]any
			if _, err := c.do(ctx, "GET", fmt.Sprintf("/users/%d", uid), nil, &u); err != nil {
				return err
			}
			return out.print(u, userHeader, userRow)
		}
	}
	return map[string]map[string]*adminCommand{
		"users": {
			"create": {usage: "create USERNAME --email EMAIL [--name NAME] [--admin] [--key FILE.pub]", args: 1,
				help: "create a user (name defaults to the username), an admin with --admin, with an SSH key with --key",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&email, "email", "", "the user's e-mail address (required)")
					fs.StringVar(&name, "name", "", "the user's full name (default: the username)")
					fs.BoolVar(&admin, "admin", false, "make the user an administrator")
					fs.StringVar(&keyFile, "key", "", "add this public key file (- for standard input) as the user's SSH key")
					keyFlags(fs)
				},
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					if email == "" {
						return fmt.Errorf("%w: --email is required", errUsage)
					}
					if name == "" {
						name = pos[0]
					}
					form := url.Values{"username": {pos[0]}, "email": {email}, "name": {name}}
					if admin {
						form.Set("admin", "true")
					}
					var u map[string]any
					if _, err := c.do(ctx, "POST", "/users", form, &u); err != nil {
						return err
					}
					if keyFile != "" {
						if _, err := addKey(ctx, c, int64(u["id"].(float64)), keyFile); err != nil {
							return fmt.Errorf("user %s created, but its key was refused: %w", pos[0], err)
						}
					}
					return out.print(u, userHeader, userRow)
				}},
			"list": {usage: "list [--search TEXT]", help: "list users",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&search, "search", "", "only users whose name, username or e-mail contains TEXT")
				},
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					p := "/users"
					if search != "" {
						p += "?search=" + url.QueryEscape(search)
					}
					users, err := c.all(ctx, p)
					if err != nil {
						return err
					}
					return out.print(users, userHeader, userRow)
				}},
			"block":   {usage: "block USERNAME", args: 1, help: "block a user: their keys, tokens and open sessions stop working", run: setState("block")},
			"unblock": {usage: "unblock USERNAME", args: 1, help: "unblock a user", run: setState("unblock")},
		},
		"keys": {
			"add": {usage: "add --user USERNAME FILE.pub [--title T] [--expires-at DATE] [--usage-type TYPE]", args: 1,
				help: "add an SSH public key to a user",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&user, "user", "", "the user (username or id; required)")
					keyFlags(fs)
				},
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					if user == "" {
						return fmt.Errorf("%w: --user is required", errUsage)
					}
					uid, err := c.userID(ctx, user)
					if err != nil {
						return err
					}
					k, err := addKey(ctx, c, uid, pos[0])
					if err != nil {
						return err
					}
					return out.print(k, keyHeader, keyRow)
				}},
			"list": {usage: "list --user USERNAME", help: "list a user's SSH keys",
				flags: func(fs *flag.FlagSet) { fs.StringVar(&user, "user", "", "the user (username or id; required)") },
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					if user == "" {
						return fmt.Errorf("%w: --user is required", errUsage)
					}
					uid, err := c.userID(ctx, user)
					if err != nil {
						return err
					}
					keys, err := c.all(ctx, fmt.Sprintf("/users/%d/keys", uid))
					if err != nil {
						return err
					}
					return out.print(keys, keyHeader, keyRow)
				}},
		},
		"groups": {
			"create": {usage: "create PATH [--name NAME]", args: 1,
				help: "create a group; a PATH with slashes (eng/backend) makes a subgroup of an existing parent",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&name, "name", "", "the group's name (default: the last part of PATH)")
				},
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					full := strings.Trim(pos[0], "/")
					parent, leaf := path.Split(full)
					parent = strings.Trim(parent, "/")
					if name == "" {
						name = leaf
					}
					form := url.Values{"path": {leaf}, "name": {name}}
					if parent != "" {
						var g map[string]any
						if _, err := c.do(ctx, "GET", "/groups/"+groupRef(parent), nil, &g); err != nil {
							return fmt.Errorf("parent group %s: %w", parent, err)
						}
						form.Set("parent_id", str(g["id"]))
					}
					var g map[string]any
					if _, err := c.do(ctx, "POST", "/groups", form, &g); err != nil {
						return err
					}
					return out.print(g, groupHeader, groupRow)
				}},
			"list": {usage: "list", help: "list groups",
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					groups, err := c.all(ctx, "/groups?all_available=true")
					if err != nil {
						return err
					}
					return out.print(groups, groupHeader, groupRow)
				}},
		},
		"tokens": {
			"create": {usage: "create --user USERNAME --scope SCOPE [--scope …] [--name NAME] [--expires-at DATE]",
				help: "create a personal access token for a user; the token is shown once",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&user, "user", "", "the user (username or id; required)")
					fs.Var(&scopes, "scope", "a scope: api, read_api, read_user… (repeatable; required)")
					fs.StringVar(&name, "name", "keygate-cli", "the token's name")
					fs.StringVar(&expires, "expires-at", "", "the token's expiry date, YYYY-MM-DD")
				},
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					if user == "" || len(scopes) == 0 {
						return fmt.Errorf("%w: --user and --scope are required", errUsage)
					}
					uid, err := c.userID(ctx, user)
					if err != nil {
						return err
					}
					form := url.Values{"name": {name}, "scopes[]": scopes}
					if expires != "" {
						form.Set("expires_at", expires)
					}
					var tk map[string]any
					if _, err := c.do(ctx, "POST", fmt.Sprintf("/users/%d/personal_access_tokens", uid), form, &tk); err != nil {
						return err
					}
					return out.print(tk, []string{"ID", "NAME", "SCOPES", "EXPIRES", "TOKEN"}, func(m map[string]any) []string {
						return []string{str(m["id"]), str(m["name"]), str(m["scopes"]), str(m["expires_at"]), str(m["token"])}
					})
				}},
		},
		"cas": {
			"add": {usage: "add GROUP FILE.pub [--title T]", args: 2,
				help: "register an SSH certificate authority's public key with a top-level group",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&title, "title", "", "the CA's title (default: the key's comment, else the file name)")
				},
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					key, err := readKeyFile(pos[1])
					if err != nil {
						return err
					}
					t := title
					if t == "" {
						t = keyTitle(key, pos[1])
					}
					var ca map[string]any
					if _, err := c.do(ctx, "POST", "/groups/"+groupRef(pos[0])+"/ssh_certificates", url.Values{"title": {t}, "key": {key}}, &ca); err != nil {
						return err
					}
					return out.print(ca, caHeader, caRow)
				}},
			"list": {usage: "list GROUP", args: 1, help: "list a group's certificate authorities",
				run: func(ctx context.Context, c *client, out *output, pos []string) error {
					cas, err := c.all(ctx, "/groups/"+groupRef(pos[0])+"/ssh_certificates")
					if err != nil {
						return err
					}
					return out.print(cas, caHeader, caRow)
				}},
		},
	}
}

var groupHeader = []string{"ID", "FULL_PATH", "NAME", "PARENT_ID"}

func groupRow(m map[string]any) []string {
	return []string{str(m["id"]), str(m["full_path"]), str(m["name"]), str(m["parent_id"])}
}

var caHeader = []string{"ID", "TITLE", "TYPE", "CREATED"}

func caRow(m map[string]any) []string {
	fields := strings.Fields(str(m["key"]))
	typ := "-"
	if len(fields) > 0 {
		typ = fields[0]
	}
	return []string{str(m["id"]), str(m["title"]), typ, str(m["created_at"])}
}

// adminUsage lists a resource's verbs (all resources when resource is "").
func adminUsage(w io.Writer, resource string) {
	cmds := adminCommands()
	for _, r := range []string{"users", "keys", "groups", "tokens", "cas"} {
		if resource != "" && r != resource {
			continue
		}
		for _, v := range []string{"create", "add", "list", "block", "unblock"} {
			if c, ok := cmds[r][v]; ok {
				fmt.Fprintf(w, "  keygate %s %s\n      %s\n", r, c.usage, c.help)
			}
		}
	}
	fmt.Fprint(w, `Every command also takes --json (the API's JSON), --url (env KEYGATE_URL, default this host's
KEYGATE_HTTP_ADDR) and --data-dir (env KEYGATE_DATA_DIR); the token is KEYGATE_TOKEN, else the data
dir's admin-token. See docs/cli.md.
`)
}

// parseInterspersed parses flags anywhere among the positional arguments
// (keygate users create alice --email …).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// runAdmin runs `keygate RESOURCE VERB …`.
func runAdmin(resource string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := stderr
		if len(args) > 0 {
			w = stdout
		}
		fmt.Fprintf(w, "usage:\n")
		adminUsage(w, resource)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := adminCommands()[resource][args[0]]
	name := resource + " " + args[0]
	if !ok {
		fmt.Fprintf(stderr, "keygate %s: unknown command %q\nusage:\n", resource, args[0])
		adminUsage(stderr, resource)
		return 2
	}
	var cc clientConfig
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: keygate %s %s\n  %s\n", resource, cmd.usage, cmd.help)
		fs.PrintDefaults()
	}
	cc.flags(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != cmd.args {
		fmt.Fprintf(stderr, "keygate %s: takes %d argument(s), got %d\nusage: keygate %s %s\n", name, cmd.args, len(pos), resource, cmd.usage)
		return 2
	}
	c, err := cc.client()
	if err != nil {
		fmt.Fprintf(stderr, "keygate %s: %v\n", name, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, c, &output{w: stdout, json: cc.JSON}, pos); err != nil {
		fmt.Fprintf(stderr, "keygate %s: %v\n", name, err)
		if errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "usage: keygate %s %s\n", resource, cmd.usage)
			return 2
		}
		return 1
	}
	return 0
}
