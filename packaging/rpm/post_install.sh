mkdir -p /etc/scoreboard/services.d
if [ -d /run/systemd/system ]; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/scoreboard.conf || :
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then
        # First install: enabled and started, as the .deb does.
        systemctl enable --now scoreboard-agent.service || :
    else
        systemctl try-restart scoreboard-agent.service || :
    fi
fi
