# Copyright: HAECS developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firewall marks for IPVS fwmark services, kept in one nftables table.

The collection owns one table (``inet haecs`` by default) with a
``prerouting`` chain (type filter, hook prerouting, priority mangle) and,
for clients on the director itself, an ``output`` chain (type route, hook
output, priority mangle).  Every rule it writes has the one shape

    ip daddr 10.0.0.1 tcp dport { 80, 443 } meta mark set 42 comment "haecs:42:tcp:10.0.0.1"

and carries its identity in the comment (``haecs:`` then the rule's name,
or ``<mark>:<protocol>:<destination>``), so the rules can be told apart from
anything else in the table and a changed rule is replaced, not duplicated.

Layers, the same as the IPVS engine's, no Ansible import: ``model`` (values
and errors), ``params`` (options to rules, errors naming the field),
``read`` (``nft -j list table``), ``plan`` (pure), ``apply`` (runs ``nft``).
"""
