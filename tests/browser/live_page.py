#!/usr/bin/env python3
"""The live page in headless Chromium, driven by Selenium (run by tests/it/live.rs).

Given an echo server and its metrics endpoint, and a second pair started with step mode:
  1. five clients connected: the page's table has five rows with their peer ports;
  2. step mode: a client's `hello` is not echoed until "Next turn" is clicked, then within
     three clicks;
  3. a client that sends `<script>` does not inject: its bytes show as text, nothing runs.
`--check` only says whether Chromium, chromedriver and Selenium are here (exit 1 if not).
Every wait is bounded; the browser has a fresh profile and no network but loopback.
"""

import argparse
import shutil
import socket
import sys
import tempfile
import time

PATIENCE = 20.0


def missing():
    """What is missing to run the test, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "Python package selenium is not installed (pip install selenium)"
    for binary in ("chromium", "chromedriver"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (apt-get install chromium chromium-driver)"
    return None


def browser(profile):
    """Headless Chromium with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def until(what, condition, timeout=PATIENCE):
    """Poll `condition` until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def client(server):
    sock = socket.create_connection(addr(server), timeout=PATIENCE)
    return sock


def echo(sock, payload):
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(4096)
        assert chunk, "server closed"
        got += chunk
    assert got == payload, got


def received(sock, want, wait):
    """Read what arrives within `wait` seconds; True once `want` is there."""
    sock.settimeout(0.05)
    got = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and len(got) < len(want):
        try:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        except socket.timeout:
            pass
    sock.settimeout(PATIENCE)
    return got


def rows(driver):
    """(peer cell text) of every connection row of worker 0."""
    from selenium.webdriver.common.by import By

    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#conns-0 tr.conn-row td.peer")]


def updates(driver):
    return int(driver.execute_script("return document.body.dataset.updates || '0'"))


def five_rows(driver, args):
    clients = [client(args.server) for _ in range(5)]
    for sock in clients:
        echo(sock, b"ping")
    ports = sorted(str(sock.getsockname()[1]) for sock in clients)
    driver.get(f"http://{args.metrics}/")

    def shown():
        return sorted(peer.rsplit(":", 1)[1] for peer in rows(driver)) == ports

    until("the page shows five rows with the clients' ports", shown)
    print(f"ok: five rows with ports {', '.join(ports)}")
    if args.screenshot:
        until("a few more updates", lambda: updates(driver) >= 5)
        driver.save_screenshot(args.screenshot)
        print(f"screenshot: {args.screenshot}")
    return clients


def click_step(driver):
    from selenium.webdriver.common.by import By

    before = driver.execute_script("return document.body.dataset.updates")
    driver.find_element(By.ID, "step").click()
    until("the page redraws after the click", lambda: driver.execute_script("return document.body.dataset.updates") != before)


def stepped_hello(driver, args):
    from selenium.webdriver.common.by import By

    driver.get(f"http://{args.step_metrics}/")
    until("the step controls show", lambda: driver.find_element(By.ID, "step").is_displayed())
    sock = client(args.step_server)
    sock.sendall(b"hello")
    assert received(sock, b"hello", 0.5) == b"", "echoed before any turn"
    for clicks in range(1, 4):
        click_step(driver)
        if received(sock, b"hello", 1.0) == b"hello":
            print(f"ok: hello echoed after {clicks} click(s) of Next turn")
            return sock
    raise AssertionError("hello not echoed within three turns")


def no_injection(driver, args):
    from selenium.webdriver.common.by import By

    sock = client(args.step_server)
    payload = b"<script>window.injected=1</script><img src=x onerror=\"window.injected=2\">"
    sock.sendall(payload)
    for _ in range(3):
        click_step(driver)
        if received(sock, payload, 1.0) == payload:
            break
    else:
        raise AssertionError("the <script> client was not echoed within three turns")
    until("the page shows the bytes as text", lambda: "<script>window.injected=1</script>" in driver.find_element(By.TAG_NAME, "body").text)
    injected = driver.execute_script("return window.injected === undefined ? null : window.injected")
    scripts = driver.execute_script("return document.scripts.length")
    images = driver.execute_script("return document.images.length")
    assert injected is None, f"script ran: window.injected = {injected}"
    assert scripts == 1 and images == 0, f"markup injected: {scripts} scripts, {images} images"
    print("ok: <script> shown as text, nothing injected")
    if args.step_screenshot:
        driver.save_screenshot(args.step_screenshot)
        print(f"screenshot: {args.step_screenshot}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--server")
    parser.add_argument("--metrics")
    parser.add_argument("--step-server")
    parser.add_argument("--step-metrics")
    parser.add_argument("--screenshot")
    parser.add_argument("--step-screenshot")
    args = parser.parse_args()
    why = missing()
    if args.check:
        print(why or "ready")
        return 1 if why else 0
    if why:
        print(why)
        return 1
    profile = tempfile.mkdtemp(prefix="live-page-chromium-")
    driver = browser(profile)
    try:
        driver.set_page_load_timeout(PATIENCE)
        clients = five_rows(driver, args)
        keep = stepped_hello(driver, args)
        no_injection(driver, args)
        for sock in clients + [keep]:
            sock.close()
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
