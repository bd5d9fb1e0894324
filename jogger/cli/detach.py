"""The detach sequence of a terminal session, Ctrl-P Ctrl-Q (as docker's): jog leaves and the
job runs on. Pure: keystrokes in, keystrokes for the job out.

Ctrl-P followed by Ctrl-Q detaches; Ctrl-P followed by anything else is sent as both bytes,
so a job still gets every Ctrl-P typed, one key late. A Ctrl-P that ends one read is held
until the next, since the keys of the sequence may arrive in two reads.
"""

CTRL_P = 0x10
CTRL_Q = 0x11
DETACH_KEYS = "Ctrl-P Ctrl-Q"


class DetachKeys:
    """Finds the detach sequence in keystrokes, read after read."""

    def __init__(self) -> None:
        self._held = False
        """The last read ended with Ctrl-P, not sent yet."""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The keys of ``data`` to send to the job, and whether the sequence was typed (the
        keys after it are dropped: jog is leaving)."""
        out = bytearray()
        at = 0
        if self._held and data:
            self._held = False
            if data[0] == CTRL_Q:
                return b"", True
            out += bytes((CTRL_P, data[0]))
            at = 1
        while True:
            found = data.find(CTRL_P, at)
            if found < 0:
                out += data[at:]
                return bytes(out), False
            out += data[at:found]
            if found + 1 == len(data):
                self._held = True
                return bytes(out), False
            if data[found + 1] == CTRL_Q:
                return bytes(out), True
            out += data[found : found + 2]
            at = found + 2
