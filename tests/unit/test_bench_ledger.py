"""Counting rules of the chaos run: sent, answered, lost, duplicates, friendly errors."""

from bench.ledger import Ledger, in_kill_window, reached_socket_at, token_for, tokens_in


def _answer(*tokens: str, turn: int = 1) -> str:
    query = "\n".join(tokens)
    return f"you said {query!r}; this is turn {turn} of conversation 1234abcd"


def test_tokens_survive_the_stand_in_s_quoting_of_joined_queries() -> None:
    text = _answer(token_for(3, 7), token_for(3, 8))
    assert tokens_in(text) == ["q3x7", "q3x8"]
    assert tokens_in("Sorry, something went wrong on my side.") == []


def test_acked_and_answered_message_is_sent_and_answered() -> None:
    ledger = Ledger()
    m = ledger.new("alice", "q0x1", 0.0)
    m.acked = True
    assert ledger.outstanding() == 1
    assert ledger.reply("alice", _answer("q0x1"), at=0.0) == "answer"
    totals = ledger.totals()
    assert (totals.sent, totals.answered, totals.lost) == (1, 1, 0)
    assert ledger.outstanding() == 0


def test_acked_message_without_reply_is_lost() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).acked = True
    totals = ledger.totals()
    assert (totals.sent, totals.lost) == (1, 1)
    assert [m.token for m in ledger.lost()] == ["q0x1"]


def test_refused_message_is_a_send_failure_not_a_loss() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).refused = 0x0004
    totals = ledger.totals()
    assert (totals.sent, totals.lost, totals.send_failed) == (0, 0, 1)


def test_unconfirmed_message_that_gets_answered_did_reach_the_bot() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).unconfirmed = True
    assert ledger.totals().send_failed == 1
    ledger.reply("alice", _answer("q0x1"), at=0.0)
    totals = ledger.totals()
    assert (totals.sent, totals.answered, totals.send_failed) == (1, 1, 0)


def test_same_answer_twice_is_one_duplicate() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).acked = True
    ledger.reply("alice", _answer("q0x1"), at=3.0)
    ledger.reply("alice", _answer("q0x1"), at=9.5)
    totals = ledger.totals()
    assert totals.duplicates == 1
    assert (ledger.duplicates[0].first_at, ledger.duplicates[0].again_at) == (3.0, 9.5)
    assert totals.reanswered == 0


def test_a_second_different_answer_is_a_reanswer_not_a_duplicate() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).acked = True
    ledger.reply("alice", _answer("q0x1", turn=1), at=0.0)
    ledger.reply("alice", _answer("q0x1", turn=2), at=0.0)
    totals = ledger.totals()
    assert (totals.duplicates, totals.reanswered) == (0, 1)


def test_each_friendly_notice_accounts_for_one_unanswered_message() -> None:
    ledger = Ledger()
    first, second = ledger.new("alice", "q0x1", 0.0), ledger.new("alice", "q0x2", 1.0)
    first.acked = second.acked = True
    assert ledger.reply("alice", "Please try again shortly.", at=0.0) == "friendly"
    totals = ledger.totals()
    assert (totals.friendly_errors, totals.answered, totals.lost) == (1, 1, 1)
    assert ledger.outstanding() == 1


def test_a_late_answer_to_an_older_message_does_not_make_a_newer_one_lost() -> None:
    # The older message's reply sat in the bot's outbox while the newer one failed in Dify:
    # the notice arrives first, but it belongs to the newer message.
    ledger = Ledger()
    older, newer = ledger.new("alice", "q0x1", 0.0), ledger.new("alice", "q0x2", 1.0)
    older.acked = newer.acked = True
    ledger.reply("alice", "Please try again shortly.", at=2.0)
    ledger.reply("alice", _answer("q0x1"), at=2.5)
    totals = ledger.totals()
    assert (totals.answered, totals.lost) == (2, 0)
    assert older.answers and newer.replied and not newer.answers


def test_a_spare_notice_proves_an_unconfirmed_message_reached_the_bot() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).unconfirmed = True
    ledger.new("alice", "q0x2", 1.0).refused = 0x0004
    ledger.reply("alice", "Please try again shortly.", at=0.0)
    totals = ledger.totals()
    assert (totals.sent, totals.answered, totals.send_failed, totals.unattributed) == (1, 1, 1, 0)


def test_a_notice_with_nothing_to_answer_is_unattributed() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).refused = 0x0004
    ledger.reply("alice", "Please try again shortly.", at=0.0)
    assert ledger.totals().unattributed == 1


def test_replies_are_counted_per_user() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).acked = True
    ledger.reply("alice", "Please try again shortly.", at=0.0)
    ledger.reply("alice", _answer("q0x1"), at=0.0)
    assert (ledger.replies_to("alice"), ledger.replies_to("bob")) == (2, 0)


def test_joined_answer_answers_every_message_it_names() -> None:
    ledger = Ledger()
    for seq in (1, 2):
        ledger.new("alice", token_for(0, seq), 0.0).acked = True
    ledger.reply("alice", _answer("q0x1", "q0x2"), at=0.0)
    assert ledger.totals().answered == 2


def test_answers_to_someone_else_s_message_are_unattributed() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).acked = True
    assert ledger.reply("bob", _answer("q0x1"), at=0.0) == "unattributed"
    totals = ledger.totals()
    assert (totals.unattributed, totals.lost) == (1, 1)


def test_messages_taken_by_the_intruder_are_neither_sent_nor_failed() -> None:
    ledger = Ledger()
    m = ledger.new("alice", "q0x1", 0.0)
    m.acked = True
    m.to_intruder = True
    totals = ledger.totals()
    assert (totals.sent, totals.lost, totals.send_failed, totals.to_intruder) == (0, 0, 0, 1)


def test_an_im_held_by_a_stall_reaches_the_socket_when_the_stall_ends() -> None:
    stalls = [(10.0, 13.0)]
    assert reached_socket_at(11.0, stalls) == 13.0
    assert reached_socket_at(9.0, stalls) == 9.0


def test_kill_window_counts_only_kills_close_to_the_moment() -> None:
    assert in_kill_window(13.0, [13.4], window=1.0)
    assert in_kill_window(13.0, [12.6], window=1.0)  # a reply relayed as the bot died
    assert not in_kill_window(13.0, [11.9], window=1.0)
    assert not in_kill_window(13.0, [14.5], window=1.0)
    assert not in_kill_window(13.0, [], window=1.0)


def test_a_restart_notice_answers_only_what_other_replies_left_unanswered() -> None:
    ledger = Ledger()
    failed, lost = ledger.new("alice", "q0x1", 0.0), ledger.new("alice", "q0x2", 1.0)
    failed.acked = lost.acked = True
    ledger.reply("alice", "Please try again shortly.", at=2.0)  # Dify failed for one of them
    assert ledger.reply("alice", "I restarted", at=3.0, restart_notice=True) == "friendly"
    ledger.reply("bob", "I restarted", at=3.0, restart_notice=True)  # bob lost nothing
    totals = ledger.totals()
    assert (totals.answered, totals.lost, totals.friendly_errors) == (2, 0, 3)
    assert (totals.restart_notices, totals.resend_asked, totals.unattributed) == (2, 1, 1)


def test_a_restart_notice_with_everything_answered_asks_for_nothing() -> None:
    ledger = Ledger()
    ledger.new("alice", "q0x1", 0.0).acked = True
    ledger.reply("alice", _answer("q0x1"), at=1.0)
    ledger.reply("alice", "I restarted", at=2.0, restart_notice=True)
    totals = ledger.totals()
    assert (totals.resend_asked, totals.unattributed, totals.lost) == (0, 1, 0)


def test_the_messages_only_a_restart_notice_answered_are_named() -> None:
    ledger = Ledger()
    answered, lost = ledger.new("alice", "q0x1", 0.0), ledger.new("alice", "q0x2", 1.0)
    answered.acked = lost.acked = True
    ledger.reply("alice", _answer("q0x1"), at=1.0)
    ledger.reply("alice", "I restarted", at=2.0, restart_notice=True)
    assert [m.token for m in ledger.resend_asked()] == ["q0x2"]


def test_a_notice_never_answers_a_message_sent_after_it_arrived() -> None:
    ledger = Ledger()
    before, after = ledger.new("alice", "q0x1", 0.0), ledger.new("alice", "q0x2", 5.0)
    before.acked = after.acked = True
    ledger.reply("alice", _answer("q0x1"), at=1.0)
    ledger.reply("alice", "I restarted", at=2.0, restart_notice=True)
    totals = ledger.totals()
    assert (totals.lost, totals.resend_asked, totals.unattributed) == (1, 0, 1)
    assert [m.token for m in ledger.lost()] == ["q0x2"]  # the drain keeps waiting for it


def test_notices_answer_in_the_order_they_arrived() -> None:
    # Lost at the kill, the user told at 93 s; a later message failed in Dify, told at 97 s.
    ledger = Ledger()
    at_kill, later = ledger.new("alice", "q0x1", 88.0), ledger.new("alice", "q0x2", 96.4)
    at_kill.acked = later.acked = True
    ledger.reply("alice", "Please try again shortly.", at=97.0)
    ledger.reply("alice", "I restarted", at=93.0, restart_notice=True)
    totals = ledger.totals()
    assert (totals.lost, totals.resend_asked, totals.unattributed) == (0, 1, 0)
    assert [m.token for m in ledger.resend_asked()] == ["q0x1"]
