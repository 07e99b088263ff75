# coffer's %preun: on erase ($1 = 0), stop and disable the unit; an upgrade
# ($1 = 1) leaves it running for %postun to restart.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now coffer.service >/dev/null 2>&1 || :
fi
exit 0
