if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 1 ]; then
        # Upgrade: the new files are in place; restart onto them.
        systemctl try-restart scoreboard-agent.service || :
    fi
fi
