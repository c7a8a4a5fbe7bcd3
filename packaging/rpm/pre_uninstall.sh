if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    # Erase (not upgrade): stop and disable before the files go.
    systemctl disable --now scoreboard-agent.service || :
fi
