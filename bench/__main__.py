"""`make bench`: the terminal bench (bench.terminals) and the audit viewer's (bench.audit_viewer, on SQLite and
on a PostgreSQL database of its own, created and dropped), then one table of their figures.

Run: .venv/bin/python -m bench [--quick]   (--quick: 1 and 20 terminals, 10 000 events: a smoke run)
"""
import argparse

from bench import audit_viewer, terminals


def table(terms, viewer):
    """Print the figures of both benches as one table."""
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


def main():
    """Run both benches and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    if args.quick:
        terms = terminals.run((1, 20), seconds=3, megabytes=10)
        viewer_args = argparse.Namespace(events=10_000, repeat=5, skip_pg=False, skip_sqlite=False)
    else:
        terms = terminals.run()
        viewer_args = argparse.Namespace(events=1_000_000, repeat=20, skip_pg=False, skip_sqlite=False)
    table(terms, audit_viewer.run(viewer_args))


if __name__ == "__main__":
    main()
