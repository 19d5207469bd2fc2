#!/usr/bin/env bash
# Makes sure a Chromium browser and its chromedriver are present for the results viewer's browser test
# (tests/test_view_browser.py). When they are missing, installs Debian's `chromium` and `chromium-driver` with
# apt-get as root or through passwordless sudo; otherwise says why and carries on (the test is then skipped
# with that reason). Never fails the set-up.
set -u
have() { command -v "$1" >/dev/null 2>&1; }
find_browser() {
  for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if have "$b"; then echo "$b"; return; fi
  done
}
if [ -n "$(find_browser)" ] && have chromedriver; then
  echo "browser test: $(find_browser) and chromedriver found"
  exit 0
fi
why=""
if ! have apt-get; then
  why="no apt-get on this system"
elif [ "$(id -u)" = 0 ]; then
  sudo=""
elif have sudo && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  why="not root and no passwordless sudo"
fi
if [ -n "$why" ]; then
  echo "browser test: Chromium or chromedriver missing and not installed ($why); install them" \
       "(Debian/Ubuntu: apt-get install chromium chromium-driver) or the browser test is skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "browser test: installing chromium and chromium-driver with apt-get"
if ! $sudo apt-get install -y -q chromium chromium-driver >/dev/null; then
  # A fresh image may have no package lists yet.
  $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null
fi
if [ -n "$(find_browser)" ] && have chromedriver; then
  echo "browser test: $(find_browser) and chromedriver installed"
else
  echo "browser test: installing chromium and chromium-driver failed; the browser test is skipped" >&2
fi
exit 0
