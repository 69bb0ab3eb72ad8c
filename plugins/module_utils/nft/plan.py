# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks: the pure planner, current and desired state in, one
list of nft JSON commands plus before/after text out."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .model import (
    OUTPUT,
    PREROUTING,
    ChainSpec,
    CurrentRule,
    Desired,
    Json,
    MarkRule,
    Plan,
    PlanError,
    TableName,
    TableState,
)

# ---------------------------------------------------------------- planning


def render(table: TableName, chains: Sequence[Tuple[str, str, Sequence[str]]]) -> str:
    """nft-style text of a table: chains as (name, header, rule texts)."""
    lines = ["table %s {" % table]
    for index, (name, header, rules) in enumerate(chains):
        if index:
            lines.append("")
        lines.append("\tchain %s {" % name)
        if header:
            lines.append("\t\t%s" % header)
        lines.extend("\t\t%s" % rule for rule in rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_state(state: TableState) -> str:
    if not state.exists:
        return ""
    return render(
        state.table,
        [
            (chain.name, chain.text(), [rule.text for rule in state.rules_in(chain.name)])
            for chain in state.chains
        ],
    )


def _table_ref(table: TableName) -> Json:
    return {"family": table.family, "name": table.name}


def _chain_obj(table: TableName, spec: ChainSpec) -> Json:
    return {
        "family": table.family,
        "table": table.name,
        "name": spec.name,
        "type": spec.type,
        "hook": spec.hook,
        "prio": spec.prio,
        "policy": spec.policy,
    }


def _rule_obj(table: TableName, chain: str, rule: MarkRule, handle: Optional[int] = None) -> Json:
    obj: Json = {"family": table.family, "table": table.name, "chain": chain}
    if handle is not None:
        obj["handle"] = handle
    obj["expr"] = rule.expr()
    obj["comment"] = rule.comment
    return obj


def _delete_rule(table: TableName, rule: CurrentRule) -> Json:
    return {
        "delete": {
            "rule": {
                "family": table.family,
                "table": table.name,
                "chain": rule.chain,
                "handle": rule.handle,
            }
        }
    }


def plan(current: TableState, desired: Desired) -> Plan:
    """Commands that turn `current` into `desired`; empty when nothing is to change.

    Pure: no nft call.  Command order inside the batch: rule deletes, chain
    deletes, table and chain adds, in-place replaces, rule adds.  The batch is
    applied as one transaction.
    """
    table = desired.table
    if current.table != table:
        raise PlanError("the current state is of table %s, not %s" % (current.table, table))
    before = render_state(current)
    if desired.state == "absent":
        return _plan_absent(current, desired, before)

    wanted = [PREROUTING, OUTPUT] if desired.output else [PREROUTING]
    wanted_names = {spec.name for spec in wanted}
    desired_ids = {rule.identity: rule for rule in desired.rules}

    delete_rules: List[Json] = []
    delete_chains: List[Json] = []
    adds: List[Json] = []
    replaces: List[Json] = []
    add_rules: List[Json] = []
    actions: List[str] = []
    after_chains: List[Tuple[str, str, List[str]]] = []

    if not current.exists:
        adds.append({"add": {"table": _table_ref(table)}})
        actions.append("add table %s" % table)

    # Chains we do not want (output without output=true, or anything else in the table).
    for chain in current.chains:
        if chain.name in wanted_names:
            continue
        kept: List[str] = []
        for rule in current.rules_in(chain.name):
            if desired.purge or rule.identity in desired_ids:
                delete_rules.append(_delete_rule(table, rule))
                actions.append(
                    "delete rule %s %s handle %d (%s)" % (table, chain.name, rule.handle, rule.text)
                )
            else:
                kept.append(rule.text)
        if desired.purge:
            delete_chains.append(
                {
                    "delete": {
                        "chain": {"family": table.family, "table": table.name, "name": chain.name}
                    }
                }
            )
            actions.append("delete chain %s %s" % (table, chain.name))
        else:
            after_chains.append((chain.name, chain.text(), kept))

    for spec in wanted:
        existing = current.chain(spec.name)
        rules_now = current.rules_in(spec.name)
        if existing is not None and not existing.matches(spec):
            if not desired.purge:
                raise PlanError(
                    "chain %s %s exists as '%s' but must be '%s'; set purge=true to recreate it (its rules are removed)"
                    % (table, spec.name, existing.text() or "a regular chain", spec.text())
                )
            for rule in rules_now:
                delete_rules.append(_delete_rule(table, rule))
            delete_chains.append(
                {
                    "delete": {
                        "chain": {"family": table.family, "table": table.name, "name": spec.name}
                    }
                }
            )
            actions.append("recreate chain %s %s as '%s'" % (table, spec.name, spec.text()))
            existing, rules_now = None, []
        if existing is None:
            adds.append({"add": {"chain": _chain_obj(table, spec)}})
            if current.chain(spec.name) is None:
                actions.append("add chain %s %s" % (table, spec.name))
        kept_texts: List[str] = []
        done: Dict[str, bool] = {}
        for rule in rules_now:
            identity = rule.identity
            target = desired_ids.get(identity) if identity is not None else None
            if target is None:
                if desired.purge:
                    delete_rules.append(_delete_rule(table, rule))
                    actions.append(
                        "delete rule %s %s handle %d (%s)"
                        % (table, spec.name, rule.handle, rule.text)
                    )
                else:
                    kept_texts.append(rule.text)
                continue
            if done.get(target.identity):
                delete_rules.append(_delete_rule(table, rule))
                actions.append(
                    "delete duplicate rule %s %s handle %d (%s)"
                    % (table, spec.name, rule.handle, rule.text)
                )
                continue
            done[target.identity] = True
            if (
                rule.rule is not None
                and rule.rule.match() == target.match()
                and rule.comment == target.comment
            ):
                kept_texts.append(target.text())
            else:
                replaces.append(
                    {"replace": {"rule": _rule_obj(table, spec.name, target, rule.handle)}}
                )
                actions.append(
                    "replace rule %s %s handle %d with: %s"
                    % (table, spec.name, rule.handle, target.text())
                )
                kept_texts.append(target.text())
        for target in desired.rules:
            if not done.get(target.identity):
                add_rules.append({"add": {"rule": _rule_obj(table, spec.name, target)}})
                actions.append("add rule %s %s %s" % (table, spec.name, target.text()))
                kept_texts.append(target.text())
        after_chains.append((spec.name, spec.text(), kept_texts))

    # Keep the listing order of nft: existing chains first, in their order, then new ones.
    order = {chain.name: index for index, chain in enumerate(current.chains)}
    after_chains.sort(key=lambda item: order.get(item[0], len(order)))
    commands = delete_rules + delete_chains + adds + replaces + add_rules
    after = render(table, after_chains) if commands else before
    after_rules = list(desired.rules)
    if not desired.purge:
        after_rules += [
            rule for rule in current.managed_rules() if rule.identity not in desired_ids
        ]
    return Plan(
        commands=commands, actions=actions, before=before, after=after, after_rules=after_rules
    )


def _plan_absent(current: TableState, desired: Desired, before: str) -> Plan:
    table = desired.table
    if not current.exists:
        return Plan(commands=[], actions=[], before=before, after=before, after_rules=[])
    if desired.purge:
        return Plan(
            commands=[{"delete": {"table": _table_ref(table)}}],
            actions=["delete table %s" % table],
            before=before,
            after="",
            after_rules=[],
        )
    remove = set(desired.remove)
    commands: List[Json] = []
    actions: List[str] = []
    after_chains: List[Tuple[str, str, List[str]]] = []
    for chain in current.chains:
        kept: List[str] = []
        for rule in current.rules_in(chain.name):
            if rule.identity is not None and rule.identity in remove:
                commands.append(_delete_rule(table, rule))
                actions.append(
                    "delete rule %s %s handle %d (%s)" % (table, chain.name, rule.handle, rule.text)
                )
            else:
                kept.append(rule.text)
        after_chains.append((chain.name, chain.text(), kept))
    after = render(table, after_chains) if commands else before
    after_rules = [rule for rule in current.managed_rules() if rule.identity not in remove]
    return Plan(
        commands=commands, actions=actions, before=before, after=after, after_rules=after_rules
    )
