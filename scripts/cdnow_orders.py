#!/usr/bin/env python3
"""CDNOW purchases as the hub's online-order import (`till360-hub import orders`).

    scripts/cdnow_orders.py DIR_OR_WHEEL OUT.jsonl [--sample]

DIR_OR_WHEEL is the wheel of the PyPI package `lifetimes` 0.11.3, which ships the CDNOW
data set, or a directory holding that wheel, the unpacked wheel, or the data files:

    pip download lifetimes==0.11.3 --no-deps -d DIR

CDNOW_master.txt (23,570 customers, 1997-01-01..1998-06-30) has a header line and the
columns customer id, date YYYYMMDD, number of CDs, dollars; CDNOW_sample.txt (--sample,
2,357 of them) has no header and the columns master customer id, sample id, date, CDs,
dollars. Both name a customer by the master id, so a sample customer is the same
`CD<id>` as in the master file.

Each row becomes one order (several rows of a customer on one day stay separate
orders): order_id `CD-<id>-<n>` with n the row's number among the customer's rows
(1-based, zero-amount rows counted, so ids stay the same whatever is skipped),
customer_no `CD<id>`, ordered at noon UTC, channel "web", one line "CD" with the
quantity, amounts in US cents (rounded). Rows of $0.00 are skipped and counted.

No customers file is needed: an order whose customer_no no profile has yet creates
the profile (store::imports::apply_order -> store::identity::apply_link inserts the
profile and the identifier, then sets the profile's customer_no).

Standard library only. The data is not to be committed.
"""

import io
import json
import os
import sys
import zipfile
from decimal import ROUND_HALF_UP, Decimal

MEMBER = "lifetimes/datasets/{}"


def usage(message):
    sys.exit(f"{message}\nusage: {sys.argv[0]} DIR_OR_WHEEL OUT.jsonl [--sample]")


def open_data(source, name):
    """The text of `name` (CDNOW_master.txt or CDNOW_sample.txt) from a wheel, a
    directory holding a wheel, an unpacked wheel or the file itself."""
    if os.path.isfile(source) and source.endswith(".whl"):
        with zipfile.ZipFile(source) as wheel:
            return io.TextIOWrapper(io.BytesIO(wheel.read(MEMBER.format(name))), "ascii")
    if not os.path.isdir(source):
        usage(f"{source}: not a wheel or a directory")
    for root, _dirs, files in sorted(os.walk(source)):
        if name in files:
            return open(os.path.join(root, name), encoding="ascii")
    wheels = sorted(
        f for f in os.listdir(source) if f.lower().startswith("lifetimes-") and f.endswith(".whl")
    )
    if wheels:
        return open_data(os.path.join(source, wheels[-1]), name)
    usage(f"{source}: no {name} and no lifetimes wheel in it")


def cents(dollars):
    return int((Decimal(dollars) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def rows(text, sample):
    """(customer id, YYYYMMDD, qty, dollars) per data row, in file order."""
    for number, line in enumerate(text, 1):
        fields = line.split()
        if not fields:
            continue
        if not fields[0].isdigit():  # the master file's header
            continue
        if sample:
            if len(fields) != 5:
                sys.exit(f"line {number}: expected 5 columns, got {line!r}")
            customer, _sample_id, date, qty, dollars = fields
        else:
            if len(fields) != 4:
                sys.exit(f"line {number}: expected 4 columns, got {line!r}")
            customer, date, qty, dollars = fields
        if len(date) != 8 or not date.isdigit():
            sys.exit(f"line {number}: bad date {date!r}")
        yield customer, date, int(qty), dollars


def main():
    args = [a for a in sys.argv[1:] if a != "--sample"]
    sample = "--sample" in sys.argv[1:]
    if len(args) != 2:
        usage("expected DIR_OR_WHEEL and OUT.jsonl")
    source, out = args
    name = "CDNOW_sample.txt" if sample else "CDNOW_master.txt"
    per_customer = {}
    read = written = skipped = 0
    customers = set()
    first = last = None
    with open_data(source, name) as text, open(out, "w", encoding="utf-8") as sink:
        for customer, date, qty, dollars in rows(text, sample):
            read += 1
            n = per_customer.get(customer, 0) + 1
            per_customer[customer] = n
            amount = cents(dollars)
            if amount <= 0 or qty <= 0:
                skipped += 1
                continue
            order = {
                "order_id": f"CD-{customer}-{n}",
                "customer_no": f"CD{customer}",
                "ordered_at": f"{date[:4]}-{date[4:6]}-{date[6:]}T12:00:00Z",
                "channel": "web",
                "lines": [
                    {
                        "description": "CD",
                        "qty": qty,
                        "unit_cents": (amount + qty // 2) // qty,
                        "amount_cents": amount,
                    }
                ],
                "total_cents": amount,
                "currency": "USD",
            }
            sink.write(json.dumps(order, separators=(",", ":")) + "\n")
            written += 1
            customers.add(customer)
            first = date if first is None else min(first, date)
            last = date if last is None else max(last, date)
    print(
        f"{name}: {read} rows of {len(per_customer)} customers; {written} orders of "
        f"{len(customers)} customers ({first}..{last}) written to {out}; "
        f"{skipped} zero-amount rows skipped",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
