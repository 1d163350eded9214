#!/usr/bin/env bash
# Start what the integration tests need and print its settings as shell
# assignments. Today: PostgreSQL (Debian's cluster), with a role that may
# create the throw-away databases the tests use.
set -euo pipefail

cluster=$(pg_lsclusters -h | head -n 1)
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  pg_createcluster "$version" main >/dev/null
  cluster=$(pg_lsclusters -h | head -n 1)
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != online ]; then
  pg_ctlcluster "$version" "$name" start
fi
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.2
done

su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dockyard_test') THEN
    CREATE ROLE dockyard_test LOGIN CREATEDB PASSWORD 'dockyard_test';
  END IF;
END \$\$;
SQL
echo "DOCKYARD_TEST_POSTGRES=postgresql+psycopg://dockyard_test:dockyard_test@127.0.0.1:$port"
