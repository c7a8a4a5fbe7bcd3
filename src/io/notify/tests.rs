use super::*;

#[test]
fn messages_display_as_the_wire_text() {
    assert_eq!(
        Message::Status("3 workers: 3 idle".into()).to_string(),
        "STATUS=3 workers: 3 idle\n"
    );
    assert_eq!(Message::Ready.to_string(), "READY=1\n");
    assert_eq!(Message::Watchdog.to_string(), "WATCHDOG=1\n");
    assert_eq!(Message::Stopping.to_string(), "STOPPING=1\n");
    let reloading = Message::reloading_now().to_string();
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap();
    assert!(usec.parse::<u64>().unwrap() > 0);
}

/// What systemd does with a datagram: read the sender's credentials, which the
/// kernel attaches when the receiver sets SO_PASSCRED.
fn receive_with_credentials(receiver: &std::os::unix::net::UnixDatagram) -> (String, UCred) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut data = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        receiver,
        &mut [std::io::IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::empty(),
    )
    .unwrap();
    let credentials = control
        .drain()
        .find_map(|message| match message {
            RecvAncillaryMessage::ScmCredentials(credentials) => Some(credentials),
            _ => None,
        })
        .expect("credentials");
    let text = String::from_utf8(data[..received.bytes].to_vec()).unwrap();
    (text, credentials)
}

#[test]
fn a_status_sent_on_behalf_of_another_process_carries_its_pid() {
    if !rustix::process::geteuid().is_root() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "this test needs root (CAP_SYS_ADMIN) and must run under CI=true"
        );
        eprintln!("skipping: sending another pid's credentials needs CAP_SYS_ADMIN (run as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify");
    let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    rustix::net::sockopt::set_socket_passcred(&receiver, true).unwrap();
    let mut main_process = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();

    let socket = NotifySocket::at(&path).unwrap();
    let status = Message::Status("3 workers: 3 idle".into());
    socket.send_as(&status, main_process.id()).unwrap();
    let (text, credentials) = receive_with_credentials(&receiver);
    assert_eq!(text, "STATUS=3 workers: 3 idle\n");
    assert_eq!(
        credentials.pid.as_raw_nonzero().get() as u32,
        main_process.id()
    );
    assert_eq!(credentials.uid, rustix::process::geteuid());

    // Our own sends carry our own pid.
    socket.send("READY=1").unwrap();
    let (_, credentials) = receive_with_credentials(&receiver);
    assert_eq!(
        credentials.pid.as_raw_nonzero().get() as u32,
        std::process::id()
    );

    // A pid that no longer exists is refused by the kernel (ESRCH), so a stale
    // MainPID can never be credited with our message.
    main_process.kill().unwrap();
    main_process.wait().unwrap();
    let error = socket.send_as(&status, main_process.id()).unwrap_err();
    assert_eq!(
        error.raw_os_error(),
        Some(rustix::io::Errno::SRCH.raw_os_error())
    );
}

#[test]
fn datagrams_arrive_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify");
    let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let socket = NotifySocket::at(&path).unwrap();
    socket.send("READY=1\nSTATUS=hello").unwrap();
    let mut buf = [0; 64];
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1\nSTATUS=hello");
}
