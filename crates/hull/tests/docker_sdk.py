"""The Python docker SDK (docker==7.1.0) against `hull system service`: a third client.

Run by crates/hull/tests/api_compose.rs: python3 docker_sdk.py unix:///SOCKET IMAGE
"""
import sys

import docker
from docker.errors import APIError, NotFound

base_url, image = sys.argv[1], sys.argv[2]
c = docker.DockerClient(base_url=base_url)
assert c.ping()
assert c.version()["ApiVersion"] == "1.41"
assert any(image in i.tags for i in c.images.list())

assert c.containers.run(image, ["echo", "hi"], remove=True) == b"hi\n"
box = c.containers.run(image, ["sh", "-c", "echo started; sleep 30"], detach=True,
                       name="sdkbox", environment={"K": "v"}, labels={"who": "sdk"})
assert box.exec_run(["sh", "-c", "echo $K"]) == (0, b"v\n")
assert [x.name for x in c.containers.list(filters={"label": "who=sdk"})] == ["sdkbox"]
box.reload()
assert box.status == "running", box.status
box.stop(timeout=1)
assert box.wait()["StatusCode"] == 137
assert b"started" in box.logs()
box.remove()

net = c.networks.create("sdknet")
assert c.networks.get("sdknet").name == "sdknet"
net.remove()
vol = c.volumes.create("sdkvol")
assert vol.name in [v.name for v in c.volumes.list()]
vol.remove()

try:
    c.containers.get("nope")
    raise SystemExit("found a container that does not exist")
except NotFound as e:
    assert "No such container: nope" in str(e), e
try:
    c.containers.create(image, name="dup")
    c.containers.create(image, name="dup")
    raise SystemExit("two containers of one name")
except APIError as e:
    assert e.status_code == 409, e
c.containers.get("dup").remove()
print("sdk ok")
