"""python-socketio against a real consultd: a smoke test of a third client
implementation. Starts the consultd binary (CONSULTD_BIN) on a free port with
a fresh data directory, then, over websocket and over polling, a patient
starts a direct call (the direct call app), the doctor hears the invitation, both join
the call's room, the doctor's offer reaches the patient verbatim, a stranger
is forbidden, the doctor confirms and the patient ends the call; a bad
token is refused with `unauthorized`.

    python tests-py/smoke.py    # exit 0 when every check held
"""

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib.metadata import version

import socketio

BIN = os.environ.get(
    "CONSULTD_BIN",
    os.path.join(os.path.dirname(__file__), "..", "target", "debug", "consultd"),
)
WAIT = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Consultd:
    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="consultd-py-")
        port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "CONSULTD_DATA_DIR": self.data,
            "LOG_LEVEL": "warn",
        }
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([BIN], env=self.env)
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz") as res:
                    if res.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("consultd did not start")
            time.sleep(0.05)

    def token(self, sub, role, name=None):
        args = [BIN, "token", "--sub", sub, "--role", role, "--ttl", "10m"]
        if name:
            args += ["--name", name]
        return subprocess.check_output(args, env=self.env, text=True).strip()

    def api(self, method, path, token, body=None):
        req = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req) as res:
                return res.status, json.load(res)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        shutil.rmtree(self.data, ignore_errors=True)


class Client:
    """A python-socketio client recording the events it is told to listen for."""

    def __init__(self, url, token, transport, events):
        self.sio = socketio.Client(reconnection=False)
        self.inbox = {name: queue.Queue() for name in events}
        for name in events:
            self.sio.on(name, lambda data, name=name: self.inbox[name].put(data))
        self.sio.connect(url, auth={"token": token}, transports=[transport], wait_timeout=WAIT)

    def next(self, name):
        return self.inbox[name].get(timeout=WAIT)

    def call(self, event, data):
        return self.sio.call(event, data, timeout=WAIT)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"  ok: {what}")


def direct_call_flow(server, transport, n):
    doctor_id, patient_id = f"py-doc-{transport}", f"py-pat-{transport}"
    doctor_token = server.token(doctor_id, "doctor", "Dr Py")
    patient_token = server.token(patient_id, "patient", "Pat Py")
    events = ["call_invitation", "webrtc:offer", "webrtc:peer_joined", "call_ended"]
    doctor = Client(server.url, doctor_token, transport, events)
    patient = Client(server.url, patient_token, transport, events)
    try:
        check(doctor.sio.transport() == transport, f"{transport}: connected over {transport}")
        check(doctor.call("identify_as_doctor", {}) == {"ok": True}, f"{transport}: identify_as_doctor acked")
        appointment = f"direct_session_{int(time.time() * 1000)}{n}"
        status, body = server.api(
            "POST",
            "/api/call-sessions/start",
            patient_token,
            {"call_type": "video", "appointment_id": appointment, "doctor_id": doctor_id},
        )
        check(status == 201 and body["data"]["appointment_id"] == appointment, f"{transport}: direct call created")
        invitation = doctor.next("call_invitation")
        check(invitation["appointment_id"] == appointment, f"{transport}: the doctor heard call_invitation")
        room = body["data"]["room_id"]
        ack = doctor.call("webrtc:join_room", {"roomId": room})
        check(ack["ok"] and ack["peers"] == [], f"{transport}: the doctor joined the room alone")
        ack = patient.call("webrtc:join_room", {"roomId": appointment})
        check(ack["peers"] == [{"userId": doctor_id, "role": "doctor"}], f"{transport}: the patient found the doctor")
        sdp = {"type": "offer", "sdp": "v=0\r\na=x:é\r\n"}
        check(doctor.call("webrtc:offer", {"roomId": room, "sdp": sdp}) == {"ok": True}, f"{transport}: offer acked")
        offer = patient.next("webrtc:offer")
        check(offer["sdp"] == sdp and offer["from"] == doctor_id, f"{transport}: the offer arrived verbatim")
        stranger = Client(server.url, server.token(f"py-nosy-{transport}", "patient"), transport, events)
        ack = stranger.call("webrtc:join_room", {"roomId": room})
        check(ack["error"]["code"] == "forbidden", f"{transport}: a stranger is forbidden")
        stranger.sio.disconnect()
        call_id = body["data"]["call_session_id"]
        status, confirmed = server.api("POST", f"/api/call-sessions/{call_id}/confirm", doctor_token)
        check(confirmed["data"]["status"] == "CONFIRMED", f"{transport}: the doctor confirmed")
        status, _ = server.api("POST", f"/api/call-sessions/{call_id}/end", patient_token)
        check(status == 200, f"{transport}: the patient ended the call")
        check(doctor.next("call_ended")["status"] == "ENDED", f"{transport}: the doctor heard call_ended")
    finally:
        doctor.sio.disconnect()
        patient.sio.disconnect()


def bad_token_is_refused(server):
    sio = socketio.Client(reconnection=False)
    reasons = queue.Queue()
    sio.on("connect_error", reasons.put)
    try:
        sio.connect(server.url, auth={"token": "garbage"}, transports=["websocket"], wait_timeout=WAIT)
    except socketio.exceptions.ConnectionError:
        reason = reasons.get(timeout=WAIT)
        message = reason.get("message") if isinstance(reason, dict) else reason
        check(message == "unauthorized", f"a bad token is refused with {message!r}")
        return
    sio.disconnect()
    raise AssertionError("a bad token connected")


def main():
    server = Consultd()
    try:
        for n, transport in enumerate(["websocket", "polling"]):
            direct_call_flow(server, transport, n)
        bad_token_is_refused(server)
    finally:
        server.stop()
    print(f"python-socketio {version('python-socketio')}: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure fails the smoke test
        print(f"FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
