# coffer's %postun: after an upgrade ($1 >= 1), restart a running server on
# the new binary. The data in /var/lib/coffer stays on erase, and an edited
# config is kept as coffer.hcl.rpmsave.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart coffer.service >/dev/null 2>&1 || :
fi
exit 0
