// compose-check loads a compose file the way `docker compose config` does, with
// github.com/compose-spec/compose-go (the loader docker compose itself is built on):
// .env interpolation, the compose-spec JSON schema, normalisation and the consistency
// checks (unknown services in depends_on, undefined volumes, ...). It prints the
// resolved project as JSON, or the loader's error and exit status 1.
//
//	go build -o ../../.cache/bin/compose-check . && compose-check -f docker-compose.yml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	file := flag.String("f", "docker-compose.yml", "compose file")
	envFile := flag.String("env-file", "", "env file (default: .env beside the compose file)")
	flag.Parse()

	abs, err := filepath.Abs(*file)
	if err != nil {
		fail(err)
	}
	dir := filepath.Dir(abs)
	env := *envFile
	if env == "" {
		env = filepath.Join(dir, ".env")
	}
	opts, err := cli.NewProjectOptions(
		[]string{abs},
		cli.WithWorkingDirectory(dir),
		cli.WithEnvFiles(env),
		cli.WithDotEnv,
		cli.WithResolvedPaths(true),
		cli.WithDefaultProfiles(),
	)
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
	os.Stdout.Write([]byte("\n"))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-check:", err)
	os.Exit(1)
}
