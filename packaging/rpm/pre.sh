# coffer's %pre: the user it runs as (no login, no shell).
getent group coffer >/dev/null || groupadd -r coffer
getent passwd coffer >/dev/null || \
    useradd -r -g coffer -d /var/lib/coffer -s /sbin/nologin -c "coffer secrets appliance" coffer
exit 0
