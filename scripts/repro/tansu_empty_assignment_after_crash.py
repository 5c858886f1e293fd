"""Minimal reproduction, librdkafka only (confluent-kafka), no kafkaesk:
member A joins a group on a 7-partition topic with a regex subscription, is
SIGKILLed, and member B joins DELAY seconds later. Prints every assignment B
gets for WATCH seconds.  usage: repro.py BROKER DELAY [WATCH]"""
import os, sys, time, signal, subprocess, uuid
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

broker, delay = sys.argv[1], float(sys.argv[2])
watch = float(sys.argv[3]) if len(sys.argv) > 3 else 30
conf = lambda group: {"bootstrap.servers": broker, "group.id": group,
    "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
    "enable.auto.commit": False, "auto.offset.reset": "earliest",
    "topic.metadata.refresh.interval.ms": 5000}

if os.environ.get("MEMBER_A"):
    group, prefix = sys.argv[4], sys.argv[5]
    c = Consumer(conf(group))
    c.subscribe([f"^{prefix}.*"], on_assign=lambda c, p: print(f"A assigned {len(p)}", flush=True))
    while True:
        c.poll(0.2)

prefix = f"r{uuid.uuid4().hex[:8]}."
group = f"g-{prefix}"
admin = AdminClient({"bootstrap.servers": broker})
for f in admin.create_topics([NewTopic(prefix + "numbers", 7, 1)]).values():
    f.result()
t0 = time.time()
ts = lambda: f"{time.time() - t0:6.2f}s"
a = subprocess.Popen([sys.executable, __file__, broker, "0", "0", group, prefix],
                     env={**os.environ, "MEMBER_A": "1"}, stdout=subprocess.PIPE, text=True)
line = a.stdout.readline().strip()
print(ts(), line)
time.sleep(2)  # a few heartbeats in the steady state
os.kill(a.pid, signal.SIGKILL); a.wait()
print(ts(), "A killed")
time.sleep(delay)
print(ts(), "B starts")
got = []
def on_assign(c, p):
    got.append(len(p)); print(ts(), f"B assigned {len(p)}", flush=True)
b = Consumer(conf(group))
b.subscribe([f"^{prefix}.*"], on_assign=on_assign, on_revoke=lambda c, p: print(ts(), f"B revoked {len(p)}", flush=True))
end = time.time() + watch
while time.time() < end:
    b.poll(0.2)
print(ts(), f"RESULT delay={delay} final={got[-1] if got else None} history={got}")
b.close()
