# The agent's user (User=scoreboard in its unit), before the agent starts below.
systemd-sysusers /usr/lib/sysusers.d/scoreboard.conf
mkdir -p /etc/scoreboard/services.d
if [ -d /run/systemd/system ]; then
    # A running bus read our policy before the user existed and dropped its
    # <policy user="scoreboard">: have it read the policy again.
    if systemctl is-active --quiet dbus.service; then
        systemctl reload dbus.service || :
    fi
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then
        # First install: enabled and started, as the .deb does.
        systemctl enable --now scoreboard-agent.service || :
    else
        systemctl try-restart scoreboard-agent.service || :
    fi
fi
