# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks: running ``nft``: read the table, apply a plan as ONE batch
(``nft -j -f -``, all or nothing; ``nft -c`` in check mode)."""

from __future__ import annotations

import json
from typing import Callable, List, Optional, Tuple

from .model import (
    DEFAULT_TABLE,
    NftError,
    Plan,
    TableName,
    TableState,
)
from .params import (
    parse_table,
)
from .read import (
    parse_table_json,
    rule_texts,
)

# ---------------------------------------------------------------- running nft

# run(argv, stdin) -> (returncode, stdout, stderr)
Runner = Callable[[List[str], Optional[str]], Tuple[int, str, str]]


def subprocess_runner(argv: List[str], stdin: Optional[str]) -> Tuple[int, str, str]:
    """A Runner on subprocess (the Ansible module passes module.run_command instead)."""
    import os
    import subprocess

    env = dict(os.environ, LC_ALL="C", LANG="C")
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
    return done.returncode, done.stdout, done.stderr


def explain(stderr: str, table: TableName, creating: bool) -> str:
    """A clear reason for an nft failure (the raw message is appended)."""
    errors = [
        line.replace("internal:0:0-0: ", "").strip()
        for line in stderr.splitlines()
        if "Error:" in line
    ]
    if len(errors) > 1:
        # nft reports the first failure, then one line per later command of the aborted batch.
        text = "%s (and %d more errors in the aborted batch)" % (errors[0], len(errors) - 1)
    elif errors:
        text = errors[0]
    else:
        text = " ".join(stderr.split())
    low = text.lower()
    if (
        "json support not compiled" in low
        or "unrecognized option '--json'" in low
        or "invalid option -- 'j'" in low
    ):
        reason = "nft was built without JSON support; this module needs nftables >= 0.9 with JSON (libjansson)"
    elif "operation not permitted" in low or "permission denied" in low:
        reason = "permission denied: changing nftables needs root (CAP_NET_ADMIN)"
    elif creating and (
        "operation not supported" in low
        or "protocol not supported" in low
        or "address family not supported" in low
    ):
        reason = (
            "the kernel has no nf_tables support for the %s family (CONFIG_NF_TABLES_%s); "
            "use a kernel with it, or mark packets with the iptables mangle table"
            % (table.family, {"inet": "INET", "ip": "IPV4", "ip6": "IPV6"}[table.family])
        )
    elif "device or resource busy" in low:
        reason = (
            "the kernel refused to delete an object still in use "
            "(a chain referenced by a jump or a verdict map in the table)"
        )
    elif "protocol not supported" in low or "operation not supported" in low:
        reason = "the kernel does not support nf_tables (or this rule) here"
    else:
        reason = "nft failed"
    return "%s: %s" % (reason, text or "(no message)")


class Nft:
    """Read and change one nftables table through ``nft -j``."""

    def __init__(self, binary: str, runner: Runner = subprocess_runner) -> None:
        self.binary = binary
        self.runner = runner

    def read_table(self, table: TableName) -> TableState:
        rc, out, err = self.runner(
            [self.binary, "-j", "list", "table", table.family, table.name], None
        )
        if rc != 0:
            if "no such file or directory" in err.lower():
                return TableState(table=table)
            raise NftError(
                "cannot read table %s: %s" % (table, explain(err, table, creating=False))
            )
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise NftError(
                "nft -j printed no JSON (%s); nftables >= 0.9 with JSON support is needed" % exc
            ) from None
        state = parse_table_json(data, table)
        if any(rule.rule is None for rule in state.rules):
            rc, out, err = self.runner(
                [self.binary, "-a", "list", "table", table.family, table.name], None
            )
            if rc == 0:
                state = parse_table_json(data, table, rule_texts(out))
        return state

    def apply(self, the_plan: Plan, check: bool = False) -> None:
        """Send the plan as one transaction (check: the kernel checks it, nothing is committed)."""
        if not the_plan.commands:
            return
        argv = [self.binary, "-j"] + (["-c"] if check else []) + ["-f", "-"]
        rc, _out, err = self.runner(argv, json.dumps(the_plan.batch()))
        if rc != 0:
            creating = any("table" in command.get("add", {}) for command in the_plan.commands)
            table = self._table_of(the_plan)
            what = "checking" if check else "applying"
            raise NftError(
                "%s the change failed, nothing was changed: %s"
                % (what, explain(err, table, creating))
            )

    @staticmethod
    def _table_of(the_plan: Plan) -> TableName:
        for command in the_plan.commands:
            for obj in command.values():
                for inner in obj.values():
                    family = inner.get("family")
                    name = inner.get("table", inner.get("name"))
                    if isinstance(family, str) and isinstance(name, str):
                        return TableName(family, name)
        return parse_table(DEFAULT_TABLE)  # pragma: no cover - a plan always names its table
