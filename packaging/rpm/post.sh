# coffer's %post: its directories, then the unit ($1: 1 install, 2 upgrade).
systemd-tmpfiles --create coffer.conf >/dev/null 2>&1 || {
    install -d -o coffer -g coffer -m 0700 /var/lib/coffer
    install -d -o coffer -g coffer -m 0750 /var/log/coffer
}
chown root:coffer /etc/coffer
chmod 0750 /etc/coffer
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset coffer.service >/dev/null 2>&1 || :
fi
systemctl daemon-reload >/dev/null 2>&1 || :
exit 0
