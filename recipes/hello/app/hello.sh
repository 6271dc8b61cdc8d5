#!/bin/sh
# The example app: greets, then shows the image's own message of the day.
echo "hello from cairn"
cat /etc/motd
