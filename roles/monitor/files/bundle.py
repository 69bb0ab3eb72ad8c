"""Write the monitor's files as the director gets them, in one tar archive.

    python3 bundle.py COLLECTION_ROOT ARCHIVE PYTHON PREFIX

PREFIX (/usr/lib/haecs)/{bin,haecs_monitor} and the engine package under
PREFIX/ansible_collections/haecs/lvs/plugins/module_utils/ipvs/: nothing else
of the collection (docs/design/monitor-deploy.md); the commands
/usr/sbin/haecs-monitor, /usr/sbin/haecsctl and /usr/sbin/haecs-sync (links into PREFIX/bin), and
the folders /etc/haecs and /var/lib/haecs (0700).  Paths are relative to /,
where the role unpacks it.  The commands in bin/ get
PYTHON (the director's system Python, with -I) in their first line, so no
PATH or PYTHONPATH decides which Python runs the monitor.  The archive is the same
bytes for the same files (sorted, owner root, time 0), so the role copies it
only when the monitor changed.  Runs on the controller.
"""

import io
import os
import sys
import tarfile

PARTS = (
    ("monitor/bin", "bin"),
    ("monitor/haecs_monitor", "haecs_monitor"),
    ("plugins/module_utils/ipvs", "ansible_collections/haecs/lvs/plugins/module_utils/ipvs"),
)


def members(root, prefix):
    yield "etc/haecs", None, 0o755
    yield "var/lib/haecs", None, 0o700
    base = prefix.strip("/")
    yield base, None, 0o755
    for source, target in PARTS:
        target = base + "/" + target
        top = os.path.join(root, source)
        for folder, folders, files in os.walk(top):
            folders[:] = sorted(name for name in folders if name != "__pycache__")
            relative = os.path.relpath(folder, top)
            inside = target if relative == "." else target + "/" + relative.replace(os.sep, "/")
            yield inside, None, 0o755
            for name in sorted(files):
                if not name.endswith(".pyc"):
                    path = os.path.join(folder, name)
                    yield inside + "/" + name, path, 0o755 if os.access(path, os.X_OK) else 0o644
    for command in ("haecs-monitor", "haecsctl", "haecs-sync"):
        yield "usr/sbin/" + command, "/" + base + "/bin/" + command, None


def main(root, archive, python, prefix):
    temporary = archive + ".part"
    base_bin = prefix.strip("/") + "/bin/"
    with tarfile.open(temporary, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, path, mode in members(root, prefix):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if mode is None:  # a command: a link into PREFIX/bin
                info.type = tarfile.SYMTYPE
                info.linkname = path
                info.mode = 0o777
                tar.addfile(info)
                continue
            info.mode = mode
            if path is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            if name.startswith(base_bin) and data.startswith(b"#!"):
                data = b"#!" + python.encode() + b" -I" + data[data.index(b"\n") :]
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(temporary, archive)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
