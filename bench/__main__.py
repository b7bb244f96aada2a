"""`make bench`: the terminal bench (bench.terminals), the idle crowd's (bench.idle) and the audit viewer's
(bench.audit_viewer, on SQLite and on a PostgreSQL database of its own, created and dropped), then one table of their
figures.

Run: .venv/bin/python -m bench [--quick]   (--quick: 1 and 20 terminals, 200 idle, 10 000 events: a smoke run)
"""
import argparse

from bench import audit_viewer, idle, terminals


def idle_lines(row):
    """Print the idle crowd's figures as lines of the summary."""
    name = f"{row['opened']} idle terminals, one worker"
    print(f"{'held of asked / dropped, ' + name:<66} {row['held']:>5} / {row['terminals']:<6} {row['dropped']}")
    print(f"{'worker CPU % total / per terminal, ' + name:<66} {row['cpu']:>5.1f} / {row['cpu_per_terminal']:.4f}")
    print(f"{'worker MiB per terminal, ' + name:<66} {row['mib_per_terminal']:>12.3f}")
    print(f"{'echo p50 / max ms (OpenSSH direct), ' + name:<66} {row['p50']:>5.2f} / {row['max']:<6.1f}"
          f" ({row['control_p50']:.2f} / {row['control_max']:.1f})")


def table(terms, viewer, crowd):
    """Print the figures of the benches as one table."""
    print("\n== Summary ==")
    print(f"{'measure':<66} {'value':>12}")
    for label, mib in terms["idle"].items():
        print(f"{'idle worker MiB, ' + label:<66} {mib:>12.1f}")
    for row in terms["bulk"]:
        print(f"{'bulk output MB/s, ' + row['path']:<66} {row['mb_per_s']:>12.1f}")
    for row in terms["crowd"]:
        name = f"{row['terminals']} typing, {row['path']}"
        print(f"{'echo p50 / p99 ms, ' + name:<66} {row['p50']:>5.2f} / {row['p99']:<6.1f}"
              f" lost {row['lost']}" + (f", {row['mib_per_terminal']:.3f} MiB/terminal"
                                         if "mib_per_terminal" in row else "") + f", load CPU {row['gen_cpu']:.0f} %")
    for database, (_plain, indexed) in viewer.items():
        for label, (p50, p95, _total) in indexed.items():
            print(f"{'audit viewer p50 / p95 ms, ' + database + ', ' + label:<66} {p50:>5.1f} / {p95:.1f}")
    idle_lines(crowd)


def main():
    """Run both benches and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    if args.quick:
        terms = terminals.run((1, 20), seconds=3, megabytes=10)
        crowd = idle.run(200, seconds=12)
        viewer_args = argparse.Namespace(events=10_000, repeat=5, skip_pg=False, skip_sqlite=False)
    else:
        terms = terminals.run()
        crowd = idle.run()
        viewer_args = argparse.Namespace(events=1_000_000, repeat=20, skip_pg=False, skip_sqlite=False)
    table(terms, audit_viewer.run(viewer_args), crowd)


if __name__ == "__main__":
    main()
